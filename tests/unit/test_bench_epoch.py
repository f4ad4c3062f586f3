"""scripts/bench_epoch.py: the union-of-times layout of the reference, the smoke run's JSON rows,
the error on absent data, and (slow) the quick run on PhysioNet set A."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from twinode.data.collate import Batch

REPO = Path(__file__).resolve().parents[2]
PHYSIONET = REPO.parent / "shared" / "data" / "physionet2012"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_epoch", REPO / "scripts" / "bench_epoch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_subject_batch() -> Batch:
    """Subject 0: history at 1.0, 2.02, 2.04 h (the last two share a 0.1-h bin) plus one padded
    row; subject 1: history at 2.0 h and a horizon row at 5.0 h. Two channels."""
    hist_t = torch.tensor([[1.0, 2.02, 2.04, 2.04], [2.0, 2.0, 2.0, 2.0]])
    hist_x = torch.tensor([[[1.0, 0.0], [2.0, 7.0], [4.0, 0.0], [9.0, 9.0]],
                           [[0.0, 3.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    hist_m = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]],
                           [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    tgt_t = torch.tensor([[2.04], [5.0]])
    tgt_x = torch.tensor([[[0.0, 0.0]], [[6.0, 0.0]]])
    tgt_m = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]]])
    return Batch(subject_id=torch.tensor([10, 11]), hist_t=hist_t, hist_x=hist_x, hist_m=hist_m,
                 hist_len=torch.tensor([3, 1]), tgt_t=tgt_t, tgt_x=tgt_x, tgt_m=tgt_m, doses=torch.zeros(2, 1, 4),
                 static=torch.zeros(2, 1), static_m=torch.zeros(2, 1), outcome=torch.tensor([0.0, float("nan")]),
                 anchor=torch.tensor([2.04, 2.0]))


def test_union_layout_exact_times_puts_each_observation_at_its_time():
    ts, lay = load_bench().union_layout(two_subject_batch(), quant_h=0.0, time_scale_h=48.0)
    assert torch.allclose(ts * 48.0, torch.tensor([1.0, 2.0, 2.02, 2.04, 5.0]))
    enc_m = lay["enc_m"]
    assert enc_m.shape == (2, 5, 2) and enc_m.sum() == 5  # padding and the horizon are not encoder input
    assert lay["enc_x"][0, 0].tolist() == [1.0, 0.0] and lay["enc_x"][0, 2].tolist() == [2.0, 7.0]
    assert lay["enc_x"][0, 3].tolist() == [4.0, 0.0] and lay["enc_x"][1, 1].tolist() == [0.0, 3.0]
    # The likelihood sees history and horizon: subject 1's 5-h value is there, not in the encoder.
    assert lay["obs_m"].sum() == 6 and lay["obs_x"][1, 4].tolist() == [6.0, 0.0] and enc_m[1, 4].sum() == 0


def test_union_layout_quantised_times_average_a_shared_bin():
    ts, lay = load_bench().union_layout(two_subject_batch(), quant_h=0.1, time_scale_h=1.0)
    assert torch.allclose(ts, torch.tensor([1.0, 2.0, 5.0]))
    # 2.02 h and 2.04 h fall in the 2.0-h bin: channel 0 averages 2 and 4, channel 1 keeps 7.
    assert torch.allclose(lay["enc_x"][0, 1], torch.tensor([3.0, 7.0]))
    assert lay["enc_m"][0, 1].tolist() == [1.0, 1.0] and lay["enc_m"][0, 2].sum() == 0


def check_report(report: dict, batch: int, n_refs: int) -> None:
    rows = report["rows"]
    assert len(rows) == 2 + n_refs, [r["name"] for r in rows]
    for r in rows:
        assert {"name", "batch", "seconds", "per_second", "error"} <= r.keys()
        assert r["seconds"] > 0 and r["per_second"] > 0
    twin, refs, mm = rows[0], rows[1:-1], rows[-1]
    assert twin["name"].startswith("twinode") and twin["batch"] == batch
    for r in [twin, *refs]:
        assert math.isclose(r["per_second"] * r["seconds"], report["machine"]["model"]["train_patients"])
        assert math.isfinite(r["error"]) and r["step_ms_median"] > 0 and r["timed_batches"] >= 1
        assert r["batches"] > r["timed_batches"] and "extrapolated from" in r["name"]
    for r in refs:
        assert r["name"].startswith("latent_ode-style reference") and r["union_times_mean"] > 1
    assert mm["batch"] is None and mm["error"] is None
    assert set(report["ratio_reference_over_twinode"]) == {r["name"] for r in refs}
    roof = report["roofline"][twin["name"]]
    assert roof["flops"] == twin["flops_per_step"] > 0 and 0 < roof["fraction"] < 1
    assert math.isclose(roof["seconds"], twin["step_ms_median"] / 1e3)
    m = report["machine"]
    assert m["threads"] == 1 and m["nproc"] >= 1 and len(m["loadavg"]) == len(m["loadavg_end"]) == 3


def test_smoke_run_writes_rows(tmp_path, capsys):
    out = tmp_path / "epoch.json"
    # Both recognition solvers; coarse bins keep the synthetic union (continuous times) short.
    assert load_bench().main(["--smoke", "--json", str(out), "--refs", "euler:0.25", "dopri5:1"]) == 0
    report = json.loads(out.read_text())
    check_report(report, batch=16, n_refs=2)
    assert [r["encoder"] for r in report["rows"][1:3]] == ["euler", "dopri5"]
    assert "| model | batch | batches | epoch s | patients/s |" in capsys.readouterr().out


def test_absent_data_is_a_clear_error(tmp_path, capsys):
    assert load_bench().main(["--quick", "--data-dir", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: PhysioNet 2012 set A not found") and "set-a.tar.gz" in err


@pytest.mark.slow
@pytest.mark.skipif(not (PHYSIONET / "set-a.tar.gz").is_file(), reason="PhysioNet 2012 set A not in ../shared/data")
def test_quick_run_on_physionet(tmp_path):
    out = tmp_path / "epoch.json"
    assert load_bench().main(["--quick", "--json", str(out), "--data-dir", str(PHYSIONET)]) == 0
    report = json.loads(out.read_text())
    check_report(report, batch=64, n_refs=2)
    assert report["rows"][0]["batches"] == 50  # 3,194 train patients in batches of 64

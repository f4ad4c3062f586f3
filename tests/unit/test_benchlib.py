"""scripts/benchlib.py: FLOP counts agree with the layer sizes, JSON rows are checked, tables and
the roofline line read as documented."""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load():
    spec = importlib.util.spec_from_file_location("benchlib", SCRIPTS / "benchlib.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bl = _load()


def row(name="a", **kw):
    return {"name": name, "batch": 4, "seconds": 0.5, "per_second": 8.0, "error": 1e-3, **kw}


def test_machine_info_describes_this_process():
    info = bl.machine_info(threads=3, device="cpu")
    assert info["threads"] == 3 and info["device"] == "cpu"
    assert info["nproc"] == __import__("os").cpu_count() and info["torch"] == torch.__version__
    assert info["python"].count(".") == 2 and info["cpu"]
    assert len(info["loadavg"]) == 3 and "gpu" not in info


def test_matmul_flops_is_a_positive_rate():
    rate = bl.matmul_flops("cpu", n=96, repeats=2)
    assert math.isfinite(rate) and rate > 1e6  # any CPU multiplies faster than 1 MFLOP/s


def test_linear_flops_matches_the_counted_flops_of_a_small_mlp():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 7), nn.Tanh(), nn.Linear(7, 3))
    x = torch.randn(11, 5)
    expected = 2 * 11 * (5 * 7 + 7 * 7 + 7 * 3)
    assert bl.linear_flops(mlp, 11) == expected
    assert bl.count_flops(lambda: mlp(x)) == expected


def test_linear_flops_matches_counted_gru_cell_and_gru():
    cell, h, xi = nn.GRUCell(4, 6), torch.randn(3, 6), torch.randn(3, 4)
    assert bl.linear_flops(cell, 3) == bl.count_flops(lambda: cell(xi, h)) == 2 * 3 * 6 * (4 + 6) * 3
    gru, xs = nn.GRU(4, 6, num_layers=2, batch_first=True, bidirectional=True), torch.randn(3, 5, 4)
    assert bl.linear_flops(gru, 3 * 5) == bl.count_flops(lambda: gru(xs))


def test_count_flops_includes_the_backward_pass():
    mlp = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    x = torch.randn(11, 5)
    fwd = bl.count_flops(lambda: mlp(x))
    both = bl.count_flops(lambda: mlp(x).sum().backward())
    # backward: weight grads of both layers and the input grad of the second (x needs none)
    assert both == fwd + fwd + 2 * 11 * 7 * 3


def test_call_counter_counts_evaluations_and_rows():
    mlp = nn.Linear(2, 2)
    with bl.CallCounter(mlp) as calls:
        mlp(torch.randn(5, 2))
        mlp(torch.randn(3, 2))
    mlp(torch.randn(9, 2))  # after the block: not counted
    assert (calls.calls, calls.rows) == (2, 8)
    assert "forward" not in mlp.__dict__  # the instance is restored


class DrivenMLP(nn.Module):
    """forward calls given_drive, as a field with a precomputed drive does."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, t, z):
        return self.given_drive(t, z)

    def given_drive(self, t, z):
        return self.lin(z)


def test_call_counter_counts_nested_methods_once():
    field = DrivenMLP()
    with bl.CallCounter(field) as calls:
        field(torch.zeros(4), torch.randn(4, 3))  # forward -> given_drive: one evaluation
        field.given_drive(torch.zeros(6), torch.randn(6, 3))  # a solver calling given_drive directly
    assert (calls.calls, calls.rows) == (2, 10)
    assert bl.linear_flops(field, 1) * calls.rows == bl.count_flops(
        lambda: (field(torch.zeros(4), torch.randn(4, 3)), field.given_drive(torch.zeros(6), torch.randn(6, 3))))


def test_count_ops_sees_elementwise_work():
    x = torch.ones(4)
    counted = bl.count_ops(lambda: x * 2.0 + 1.0)
    assert counted == {"ops": 2, "elements": 8}
    assert bl.count_ops(lambda: x.view(2, 2))["elements"] == 0


def test_roofline_line_reads_as_documented():
    assert bl.roofline_line(3.1e9, 0.12, 64.8e9) == (
        "roofline: 3.1 GFLOP/step / 0.120 s = 25.8 GFLOP/s = 40% of the measured matmul 64.8 GFLOP/s")
    r = bl.roofline(2e6, 0.5, 8e9)
    assert r["achieved_flops"] == 4e6 and math.isclose(r["fraction"], 5e-4)
    assert "0.05% of the measured matmul 8 GFLOP/s" in bl.roofline_line(2e6, 0.5, 8e9, unit="solve")
    with pytest.raises(ValueError, match="positive seconds"):
        bl.roofline(1e6, 0.0, 1e9)


def test_common_args_defaults_and_flags():
    ap = bl.common_args(argparse.ArgumentParser())
    d = ap.parse_args([])
    assert (d.json, d.quick, d.threads, d.device) == (None, False, 1, "cpu")
    a = ap.parse_args(["--json", "x.json", "--quick", "--threads", "2", "--device", "cuda"])
    assert (a.json, a.quick, a.threads, a.device) == ("x.json", True, 2, "cuda")


def test_write_json_round_trip_with_extra_and_non_finite(tmp_path):
    path = tmp_path / "sub" / "r.json"
    bl.write_json(path, {"cpu": "x"}, [row(error=float("nan"), seconds=None)], extra={"peak_flops": 1e9})
    doc = json.loads(path.read_text())
    assert doc["machine"] == {"cpu": "x"} and doc["peak_flops"] == 1e9
    assert doc["rows"][0]["error"] is None and doc["rows"][0]["seconds"] is None and doc["rows"][0]["batch"] == 4


def test_write_json_names_the_missing_key(tmp_path):
    bad = row("slow one")
    del bad["per_second"]
    with pytest.raises(ValueError, match=r"row 1 \('slow one'\) lacks key\(s\) per_second"):
        bl.write_json(tmp_path / "r.json", {}, [row(), bad])
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(ValueError, match="overwrite"):
        bl.write_json(tmp_path / "r.json", {}, [row()], extra={"rows": []})


def test_markdown_table_formats_and_aligns():
    rows = [row("x", error=None), row("y", seconds=0.25)]
    table = bl.markdown_table(rows, ["name", ("ms", lambda r: 1e3 * r["seconds"], ".1f"), ("err", "error", ".1e")])
    assert table.splitlines() == ["| name | ms | err |", "|---|---:|---:|",
                                  "| x | 500.0 | - |", "| y | 250.0 | 1.0e-03 |"]


def test_summary_reads_reports_and_names_unreadable_ones(tmp_path):
    good, broken = tmp_path / "train.json", tmp_path / "broken.json"
    bl.write_json(good, {"cpu": "Some CPU", "device": "cpu"}, [row("rk4", batch=32)])
    broken.write_text("{not json")
    text = bl.summary([str(good), str(broken)])
    assert "## train (Some CPU, cpu)" in text and "| rk4 | 32 | 0.5 | 8 | 1.00e-03 |" in text
    assert "## broken: unreadable (JSONDecodeError" in text

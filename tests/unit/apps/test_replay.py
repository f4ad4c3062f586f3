"""A recorded stay (MEDS, timestamps) replayed as a stream gives the history the file reader gives."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import polars as pl
import pytest
import torch

from twinode.apps.online import OnlineTwin
from twinode.apps.stream import EventStream, table_lines
from twinode.cli import monitor as monitor_cli
from twinode.export.inputs import read_history

T0 = datetime(2100, 5, 1, 6, 0)


def _meds(tmp_path):
    rows = []
    for sid in (1, 2):
        at = lambda h: T0 + timedelta(hours=h)  # noqa: E731
        rows += [(sid, None, "STATIC//BODY_WEIGHT//kg", 70.0 + sid), (sid, at(0), "STATIC//AGE//years", 30.0),
                 (sid, at(0), "INSULIN//BASAL//U/h", 1.2), (sid, at(5), "INSULIN//BASAL_END", None),
                 (sid, at(5), "INSULIN//BASAL//U/h", 0.8), (sid, at(1), "MEAL//CHO//g", 50.0),
                 (sid, at(1), "INSULIN//BOLUS//U", 4.0), (sid, at(2), "NOTE//SOMETHING", None)]
        rows += [(sid, at(k / 12), "CGM//mg/dL", 110.0 + 3 * k + sid) for k in range(0, 96)]
        rows += [(sid, at(3), "CGM//mg/dL", 999.0)]  # outside valid_range: dropped everywhere
    frame = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                       "numeric_value": pl.Float32}, orient="row")
    (tmp_path / "meds" / "data").mkdir(parents=True)
    frame.write_parquet(tmp_path / "meds" / "data" / "0.parquet")
    return tmp_path / "meds"


def test_a_replayed_stay_equals_the_file_readers_history(glucose_twin, tmp_path):
    twin, meta = glucose_twin
    root = _meds(tmp_path)
    h = read_history(root, meta, subject=2)
    lines, read = table_lines(root, meta, subject=2)
    state = OnlineTwin(twin, meta, num_samples=0)
    stream = EventStream(lines, meta, "replay")
    for ev in stream:
        state.add_event(ev)
    t, v, m = state.history()
    assert torch.equal(t, h.times) and torch.equal(m, h.mask) and torch.allclose(v, h.values)
    assert torch.allclose(state.static.nan_to_num(-1), h.static.nan_to_num(-1))
    assert torch.allclose(state.dose_tensor(8.0), h.doses)
    assert h.doses[:, 2].tolist() == pytest.approx([6.0, 50.0, 4.0, 0.8 * 19])  # basal: 1.2 U/h x 5 h, then 0.8 U/h to 24 h
    assert h.dropped["out_of_range:CGM"] == 1 and read.skipped == h.skipped == {"NOTE//SOMETHING": 1}


def test_monitor_replays_a_meds_subject_and_names_its_options(glucose_twin_file, tmp_path, capsys):
    root = _meds(tmp_path)
    out = tmp_path / "o.jsonl"
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twin_file), "--stream", str(root), "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "twinode-monitor --subject" in err and not out.exists()
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twin_file), "--stream", str(root), "--subject", "1", "--samples", "0",
                          "--out", str(out)])
    assert e.value.code == 0
    scored = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(scored) == 96 - 3 and max(s["value"] for s in scored) < 400
    assert "out_of_range:CGM" in capsys.readouterr().err


def test_online_twin_of_an_anchored_twin_re_encodes_and_equals_forecast(tmp_path, rows_of):
    from twinode.data.spec_files import load_spec
    from twinode.export.torchscript import export_twin, load_verified_twin
    from twinode.models.twin import PatientTwin

    torch.manual_seed(0)
    twin = PatientTwin(1, 3, 3, latent_dim=8, hidden=16, encoder_hidden=16, risk_head=False, decoder="anchored",
                       encoder="gru_delta").eval()
    norm = dict(meas_mean=[150.0], meas_std=[50.0], static_mean=[60.0, 1.5, 30.0], static_std=[20.0, 0.8, 15.0],
                dose_scale=[50.0, 5.0, 20.0])
    export_twin(twin, norm, load_spec("glucose"), tmp_path / "twin.pt", solver={"method": "rk4"})
    scripted, meta = load_verified_twin(tmp_path / "twin.pt")
    state = OnlineTwin(scripted, meta, num_samples=0)
    assert not state.incremental  # its decoder reads the history: no O(1) update
    for ev in EventStream((json.dumps(r) for r in rows_of(24)), meta):
        state.add_event(ev)
    q = torch.tensor([2.5, 4.0])
    t, v, m = state.history()
    with torch.no_grad():
        ref, _ = scripted.forecast(t, v, m, state.static, state.dose_tensor(4.0), q)
    assert torch.allclose(state.predictive(q)[0], ref)

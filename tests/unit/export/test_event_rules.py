"""Training and every inference reader read the same events the same way.

One test per rule where they used to differ: the same-time duplicate rule, ``valid_range``,
code resolution, a bolus row with a duration, an infusion without an end; plus the rate
codes (``value: rate``), negative doses, the time-unit check, MEDS input and the policies in
``twinode.json``. Each compares an inference path with the training pipeline
(``load_checked`` + ``tensorize``) on the same raw events.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from twinode.apps.online import OnlineTwin
from twinode.apps.stream import EventStream
from twinode.data.spec_files import load_spec
from twinode.data.rules import spec_from_meta
from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import tensorize
from twinode.data.validate import load_checked
from twinode.errors import DataError
from twinode.export.inputs import read_history
from twinode.export.pyfunc import ForecastRequest, request_tensors
from twinode.export.torchscript import export_twin, load_verified_twin
from twinode.models.twin import PatientTwin


def training_record(path, spec: FeatureSpec):
    """The subject's record as training builds it (original units: transforms compared apart)."""
    records, _ = tensorize(load_checked(path, spec).events, spec, transform=False)
    assert len(records) == 1
    return records[0]


def export_for(spec: FeatureSpec, path) -> tuple:
    D, S, M = len(spec.measurements), len(spec.statics), len(spec.interventions)
    torch.manual_seed(0)
    twin = PatientTwin(D, S, M, latent_dim=8, hidden=16, encoder_hidden=16, risk_head=False).eval()
    norm = {"meas_mean": [0.0] * D, "meas_std": [1.0] * D, "static_mean": [0.0] * S, "static_std": [1.0] * S,
            "dose_scale": [1.0] * M}
    export_twin(twin, norm, spec, path, solver={"name": "rk4", "step": 0.5})
    return load_verified_twin(path)


def stream_of(rows: list[dict], meta: dict) -> tuple[OnlineTwin, EventStream]:
    stream = EventStream((json.dumps(r) for r in rows), meta, "s.jsonl")
    state = OnlineTwin(*load_twin_cache[meta["dataset"]], num_samples=0)
    for ev in stream:
        state.add_event(ev)
    return state, stream


load_twin_cache: dict[str, tuple] = {}


@pytest.fixture
def synthetic(twin_file):
    twin, meta = load_verified_twin(twin_file)
    load_twin_cache[meta["dataset"]] = (twin, meta)
    return twin, meta, spec_from_meta(meta)


@pytest.fixture(scope="module")
def glucose(tmp_path_factory):
    spec = load_spec("glucose")
    twin, meta = export_for(spec, tmp_path_factory.mktemp("g") / "twin.pt")
    load_twin_cache[meta["dataset"]] = (twin, meta)
    return twin, meta, spec


def write(tmp_path, text: str, name: str = "h.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---- 1. same-time duplicates: the FeatureSpec's rule everywhere ----

def test_same_time_duplicates_combine_by_the_spec_rule_in_every_reader(synthetic, tmp_path):
    twin, meta, spec = synthetic
    assert spec.measurements[0].duplicates == "mean"
    p = write(tmp_path, "subject_id,time,code,numeric_value\n7,0,HR,90\n7,0,HR,100\n7,0,MAP,60\n7,1,HR,80\n")
    h = read_history(p, meta)
    assert h.values[0, 0].item() == pytest.approx(95.0)  # the mean, not the last row
    np.testing.assert_allclose(h.values.numpy(), training_record(p, spec).values, rtol=1e-6)
    rows = [{"time": 0, "code": "HR", "value": 90}, {"time": 0, "code": "HR", "value": 100},
            {"time": 0, "code": "MAP", "value": 60}, {"time": 1, "code": "HR", "value": 80}]
    state, _ = stream_of(rows, meta)
    t, v, m = state.history()
    np.testing.assert_allclose(v.numpy(), h.values.numpy(), rtol=1e-6)
    req = ForecastRequest(history=[{"time": r["time"], "name": r["code"], "value": r["value"]} for r in rows], query_times=[2.0])
    assert torch.allclose(request_tensors(req, meta)[1], h.values)


# ---- 2. valid_range: out-of-range values dropped and counted at inference too ----

def test_out_of_range_values_are_dropped_and_counted_like_training(synthetic, tmp_path, capsys):
    twin, meta, spec = synthetic
    events = meta["events"]["spec"]["features"]
    assert next(f for f in events if f["name"] == "HR")["valid_range"] == [20, 250]  # the policy travels in twinode.json
    p = write(tmp_path, "subject_id,time,code,numeric_value\n7,0,HR,1e30\n7,0,MAP,60\n7,1,HR,80\n")
    h = read_history(p, meta)
    assert h.values.abs().max().item() < 1e3 and h.mask[0, 0] == 0
    assert h.dropped["out_of_range:HR"] == 1
    rec = training_record(p, spec)
    np.testing.assert_allclose(h.values.numpy(), rec.values)
    np.testing.assert_allclose(h.mask.numpy(), rec.mask)
    state, stream = stream_of([{"time": 0, "code": "HR", "value": 1e30}, {"time": 0, "code": "MAP", "value": 60},
                               {"time": 1, "code": "HR", "value": 80}], meta)
    assert stream.dropped["out_of_range:HR"] == 1 and torch.equal(state.history()[2], h.mask)
    req = ForecastRequest(history=[{"time": 0, "name": "HR", "value": 1e30}, {"time": 1, "name": "HR", "value": 80}],
                          query_times=[2.0])
    times, _, mask = request_tensors(req, meta)[:3]
    assert times.tolist() == [1.0] and mask[:, 0].tolist() == [1.0]  # no row is left for the dropped value


# ---- 3. code resolution: an exact code wins over an earlier pattern, in every reader ----

def test_an_exact_code_wins_over_a_pattern_of_another_role(tmp_path):
    spec = FeatureSpec.from_dict({"name": "codes", "features": [
        {"name": "LAB", "role": "measurement", "code": "LAB//", "match": "prefix"},
        {"name": "AGE", "role": "static", "code": "LAB//AGE"}]})
    twin, meta = export_for(spec, tmp_path / "twin.pt")
    load_twin_cache[meta["dataset"]] = (twin, meta)
    p = write(tmp_path, "subject_id,time,code,numeric_value\n1,0,LAB//AGE,70\n1,0,LAB//X,5\n")
    h = read_history(p, meta)
    rec = training_record(p, spec)
    assert h.static.tolist() == rec.static.tolist() == [70.0]
    assert h.values.tolist() == rec.values.tolist() == [[5.0]]
    state, _ = stream_of([{"time": 0, "code": "LAB//AGE", "value": 70}, {"time": 0, "code": "LAB//X", "value": 5}], meta)
    assert state.static.tolist() == [70.0] and state.history()[1].tolist() == [[5.0]]


# ---- 4. a bolus row that carries a duration: given at its time everywhere ----

def test_a_bolus_row_with_a_duration_is_a_bolus_in_every_reader(synthetic, tmp_path):
    twin, meta, spec = synthetic
    p = write(tmp_path, "subject_id,time,code,numeric_value,duration_h\n7,0,HR,90,\n7,1,VASO,8,2\n")
    h = read_history(p, meta)
    assert h.doses.tolist() == training_record(p, spec).doses.tolist() == [[1.0, 0.0, 8.0, 0.0]]
    assert h.dropped["bolus_duration_ignored:VASO"] == 1
    state, stream = stream_of([{"time": 0, "code": "HR", "value": 90}, {"time": 1, "code": "VASO", "value": 8, "duration_h": 2}], meta)
    assert state.dose_tensor(5.0).tolist() == [[1.0, 0.0, 8.0, 0.0]]
    assert stream.dropped["bolus_duration_ignored:VASO"] == 1
    req = ForecastRequest(history=[{"time": 0, "name": "HR", "value": 90}],
                          plan=[{"name": "VASO", "time_h": 1, "amount": 8, "duration_h": 2}], query_times=[2.0])
    assert request_tensors(req, meta)[4].tolist() == [[1.0, 0.0, 8.0, 0.0]]


# ---- 5. an infusion without an end: one rule (next start, else to the horizon) ----

def test_an_open_rate_infusion_runs_to_the_horizon_in_every_reader(glucose, tmp_path):
    twin, meta, spec = glucose
    p = write(tmp_path, "subject_id,time,code,numeric_value\n1,0,CGM//mg/dL,120\n1,0,INSULIN//BASAL//U/h,1.5\n"
                        "1,2,CGM//mg/dL,130\n1,3,INSULIN//BASAL//U/h,1.0\n")
    rec = training_record(p, spec)
    # 1.5 U/h until the next start at 3 h (4.5 U), then 1.0 U/h to the end of the 24-h window (21 U).
    assert rec.doses.tolist() == [[0.0, 2.0, 4.5, 3.0], [3.0, 2.0, 21.0, 21.0]]
    h = read_history(p, meta)
    assert h.doses.tolist() == rec.doses.tolist()
    assert h.doses_until(30.0).tolist() == [[0.0, 2.0, 4.5, 3.0], [3.0, 2.0, 27.0, 27.0]]  # past the window: to the last query
    state, _ = stream_of([{"time": 0, "code": "CGM", "value": 120}, {"time": 0, "code": "InsulinBasal", "value": 1.5},
                          {"time": 2, "code": "CGM", "value": 130}, {"time": 3, "code": "InsulinBasal", "value": 1.0}], meta)
    assert state.dose_tensor(10.0).tolist() == rec.doses.tolist()


def test_a_rate_with_a_duration_becomes_the_contracts_total(glucose, tmp_path):
    twin, meta, spec = glucose
    assert meta["events"]["spec"]["features"][3]["value"] == "rate"
    p = write(tmp_path, "subject_id,time,code,numeric_value,duration_h\n1,0,CGM//mg/dL,120,\n1,0,INSULIN//BASAL//U/h,0.8,6\n")
    assert read_history(p, meta).doses.tolist() == training_record(p, spec).doses.tolist() == [[0.0, 2.0, pytest.approx(4.8), 6.0]]


# ---- negative doses, the time unit, MEDS input ----

def test_a_negative_dose_is_refused_in_training_and_at_inference(synthetic, tmp_path):
    twin, meta, spec = synthetic
    p = write(tmp_path, "subject_id,time,code,numeric_value\n7,0,HR,90\n7,1,VASO,-3\n")
    with pytest.raises(DataError, match=r"dose amount must be >= 0.*subject=7, code=VASO, row=1"):
        read_history(p, meta)
    with pytest.raises(DataError, match="dose amount must be >= 0"):
        training_record(p, spec)


def test_times_in_minutes_are_refused_with_a_hint(synthetic, tmp_path):
    twin, meta, spec = synthetic
    rows = "".join(f"7,{m},HR,90\n" for m in range(0, 48 * 60, 60))  # 48 h written in minutes
    p = write(tmp_path, "subject_id,time,code,numeric_value\n" + rows)
    with pytest.raises(DataError, match="look like minutes or seconds.*divide minutes by 60"):
        read_history(p, meta)


def test_events_after_the_window_are_counted_with_a_warning_and_readable_on_request(synthetic, tmp_path):
    twin, meta, spec = synthetic
    p = write(tmp_path, "subject_id,time,code,numeric_value\n" + "".join(f"7,{h},HR,90\n" for h in range(0, 61, 6)))
    h = read_history(p, meta)
    assert h.times.tolist()[-1] == 48.0 and h.dropped["after_window"] == 2 and "--window-hours" in h.warnings[0]
    assert h.times.tolist() == training_record(p, spec).times.tolist()
    longer = read_history(p, meta, window_hours=72)
    assert longer.times.tolist()[-1] == 60.0 and not longer.warnings


def test_meds_input_picks_a_subject_and_an_origin(synthetic, tmp_path):
    twin, meta, spec = synthetic
    p = write(tmp_path, "subject_id,time,code,numeric_value\n"
                        "1,2100-01-01T08:00,HR,90\n1,2100-01-01T09:30,MAP,60\n1,2100-01-01T10:00,OTHER_CODE,1\n"
                        "2,2100-01-01T08:00,HR,70\n")
    with pytest.raises(DataError, match="history must hold one subject.*twinode-plan --subject"):
        read_history(p, meta, command="twinode-plan")
    with pytest.raises(DataError, match="unknown code 'OTHER_CODE'.*twinode-monitor --skip-unknown-codes"):
        read_history(p, meta, subject=1, skip_unknown=False, command="twinode-monitor")
    h = read_history(p, meta, subject=1)  # the first event opens the window; unknown codes skipped in timestamped data
    assert h.times.tolist() == [0.0, 1.5] and h.skipped == {"OTHER_CODE": 1}
    h = read_history(p, meta, subject=1, time_origin="2100-01-01T07:00")
    assert h.times.tolist() == [1.0, 2.5]
    with pytest.raises(DataError, match="subject 3 is not in the events"):
        read_history(p, meta, subject=3)


def test_an_end_code_closes_its_infusion_in_every_reader(glucose, tmp_path):
    twin, meta, spec = glucose
    p = write(tmp_path, "subject_id,time,code,numeric_value\n1,0,CGM//mg/dL,120\n1,0,INSULIN//BASAL//U/h,1.5\n"
                        "1,2,INSULIN//BASAL_END,\n1,3,CGM//mg/dL,130\n")
    rec = training_record(p, spec)
    assert rec.doses.tolist() == [[0.0, 2.0, 3.0, 2.0]]  # 1.5 U/h for 2 h
    assert read_history(p, meta).doses.tolist() == rec.doses.tolist()
    state, _ = stream_of([{"time": 0, "code": "CGM", "value": 120}, {"time": 0, "code": "INSULIN//BASAL//U/h", "value": 1.5},
                          {"time": 2, "code": "INSULIN//BASAL_END"}, {"time": 3, "code": "CGM", "value": 130}], meta)
    assert state.dose_tensor(6.0).tolist() == rec.doses.tolist()


def test_an_hour_origin_shifts_an_hour_history_and_a_bad_origin_is_named(synthetic, tmp_path):
    twin, meta, spec = synthetic
    p = write(tmp_path, "subject_id,time,code,numeric_value\n7,0,HR,90\n7,2,HR,95\n7,5,MAP,60\n")
    assert read_history(p, meta, time_origin=2.0).times.tolist() == [0.0, 3.0]
    assert read_history(p, meta, time_origin=2.0).dropped["before_window"] == 1
    with pytest.raises(DataError, match="--time-origin 'noon' is not a number of hours"):
        read_history(p, meta, time_origin="noon")


def test_a_twin_exported_before_the_events_block_reads_with_its_names_and_default_rules(synthetic, tmp_path):
    twin, meta, spec = synthetic
    old = {k: v for k, v in meta.items() if k != "events"}
    old_spec = spec_from_meta(old)
    assert [f.name for f in old_spec.measurements] == [f.name for f in spec.measurements]
    assert old_spec.measurements[0].valid_range is None and old_spec.interventions[0].kind == "bolus"
    p = write(tmp_path, "subject_id,time,code,numeric_value\n7,0,HR,90\n7,0,HR,100\n7,1,VASO,5\n")
    h = read_history(p, old)
    assert h.values[0, 0].item() == pytest.approx(95.0) and h.doses.tolist() == [[1.0, 0.0, 5.0, 0.0]]

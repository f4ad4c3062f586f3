"""Parity per dataset config: the tensors training builds for a subject equal (1e-6) the tensors
each inference reader builds from the same subject's raw events (the history reader, the
stream into OnlineTwin, the pyfunc record), and the exported twin's forecast on the inference
tensors equals the training module's forecast on the training batch (1e-5).

Embedded or fixture data always runs (synthetic ICU, a simulated glucose cohort, a
challenge-format PhysioNet archive, a MIMIC-style MEDS folder); the real PhysioNet 2012 and
MIMIC-IV demo data under ../shared/data run where present.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import torch

from conftest import SHARED_DATA, T0, make_archive, outcomes_text, record_text, write_events
from twinode.apps.online import OnlineTwin
from twinode.apps.stream import EventStream, table_lines
from twinode.data.spec_files import load_spec
from twinode.data.events import align_subject
from twinode.data.collate import collate_windows
from twinode.data.importers.physionet2012 import import_physionet2012
from twinode.data.simulators.glucose_source import GlucoseSimSource
from twinode.data.sources import MedsSource, SyntheticICUSource
from twinode.data.tensorize import Normaliser, tensorize
from twinode.data.windows import ForecastWindows
from twinode.export.inputs import read_history
from twinode.export.pyfunc import ForecastRequest, request_tensors
from twinode.export.torchscript import export_twin, load_verified_twin
from twinode.models.twin import PatientTwin


def _export(spec, normaliser: Normaliser, path, decoder: str = "latent"):
    torch.manual_seed(0)
    twin = PatientTwin(len(spec.measurements), len(spec.statics), len(spec.interventions), latent_dim=8, hidden=16,
                       encoder_hidden=16, risk_head=False, decoder=decoder).eval()
    export_twin(twin, normaliser.as_dict(), spec, path, solver={"name": "rk4", "step": 0.5})
    scripted, meta = load_verified_twin(path)
    return twin, scripted, meta


def _transformed(spec, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = values.astype(np.float64).copy()
    for c, f in enumerate(spec.measurements):
        if f.transform == "log1p":
            out[:, c] = np.where(mask[:, c] > 0, np.log1p(np.maximum(out[:, c], 0.0)), 0.0)
    return out


def assert_same_tensors(spec, record, history):
    """Training record (transformed units) vs inference history (original units, transformed here)."""
    np.testing.assert_allclose(history.times.numpy(), record.times, rtol=1e-6, atol=1e-6, err_msg="times")
    np.testing.assert_array_equal(history.mask.numpy(), record.mask, err_msg="mask")
    np.testing.assert_allclose(_transformed(spec, history.values.numpy(), history.mask.numpy()), record.values,
                               rtol=1e-6, atol=1e-6, err_msg="values")
    np.testing.assert_allclose(history.static.numpy(), record.static, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg="static")
    np.testing.assert_allclose(history.doses.numpy(), record.doses, rtol=1e-6, atol=1e-6, err_msg="doses")


def assert_same_forecast(twin, scripted, normaliser, spec, record, history, horizon_h: float):
    """The exported forecast on the inference tensors == the training module's on the training batch."""
    from twinode.training.lit_module import TwinLitModule

    window = ForecastWindows([normaliser.apply(record)], horizon_h, spec.window_hours, "fixed")[0]
    if not len(window.tgt_t):
        return False
    batch = collate_windows([window])
    with torch.no_grad():
        mean = TwinLitModule(twin)._objective(batch, sample=False)["mean_f"][0]
    y = mean.numpy().astype(np.float64) * normaliser.meas_std + normaliser.meas_mean
    log1p = np.array([f.transform == "log1p" for f in spec.measurements])
    train_mean = np.where(log1p, np.expm1(np.minimum(y, 80.0)), y)
    k = int((history.times <= float(window.anchor) + 1e-6).sum())
    with torch.no_grad():
        got, _ = scripted.forecast(history.times[:k], history.values[:k], history.mask[:k], history.static, history.doses,
                                   torch.from_numpy(window.tgt_t))
    # Compared where the twin's output conversion is the plain inverse of the normalisation: channels
    # without a transform (a log1p channel's reported mean is the lognormal mean, which needs the
    # spread), inside the valid range (the exported twin clips to it). Every channel's input feeds
    # the shared latent state, so a difference in any input tensor shows here.
    lo = np.array([f.valid_range[0] if f.valid_range else -np.inf for f in spec.measurements])
    hi = np.array([f.valid_range[1] if f.valid_range else np.inf for f in spec.measurements])
    inside = (train_mean >= lo) & (train_mean <= hi) & ~log1p
    assert inside.mean() > 0.3 * (~log1p).mean(), "too few comparable entries"
    np.testing.assert_allclose(got.numpy()[inside], train_mean[inside], rtol=1e-5, atol=1e-5 * np.abs(train_mean[inside]).max())
    return True


def _centre_unobserved(normaliser: Normaliser, records, spec) -> Normaliser:
    """Channels no training subject observed get the middle of their valid range as mean, so an
    untrained twin's answers there are ordinary values rather than range-clipped ones."""
    seen = np.concatenate([r.mask for r in records]).sum(0) > 0
    for c, f in enumerate(spec.measurements):
        if not seen[c] and f.valid_range:
            mid = 0.5 * (f.valid_range[0] + f.valid_range[1])
            normaliser.meas_mean[c] = np.log1p(mid) if f.transform == "log1p" else mid
    return normaliser


def assert_same_stream(spec, record, meta, scripted, path, subject):
    """The stay replayed as a stream (EventStream -> OnlineTwin) gives the training tensors."""
    state = OnlineTwin(scripted, meta, num_samples=0)
    lines, _ = table_lines(path, meta, subject=subject)
    for ev in EventStream(lines, meta, str(path)):
        state.add_event(ev)
    t, v, m = state.history()
    np.testing.assert_allclose(t.numpy(), record.times, rtol=1e-6, atol=1e-6, err_msg="stream times")
    np.testing.assert_array_equal(m.numpy(), record.mask, err_msg="stream mask")
    np.testing.assert_allclose(_transformed(spec, v.numpy(), m.numpy()), record.values, rtol=1e-6, atol=1e-6, err_msg="stream values")
    np.testing.assert_allclose(state.static.numpy(), record.static, rtol=1e-6, equal_nan=True, err_msg="stream static")
    np.testing.assert_allclose(state.dose_tensor(0.0).numpy(), record.doses, rtol=1e-6, atol=1e-6, err_msg="stream doses")


def assert_same_record(spec, record, meta, path, subject):
    """The stay as a pyfunc request (names, hours, contract plan rows) gives the training tensors."""
    a = align_subject(path, spec, subject=subject)
    ev = a.events.filter(pl.col("numeric_value").is_not_null() & pl.col("numeric_value").is_not_nan()).sort("time", maintain_order=True)
    feats = [(spec.resolve(c), t, v) for c, t, v in zip(ev["code"].to_list(), ev["time"].to_list(), ev["numeric_value"].to_list())]
    names = [f.name for f in spec.interventions]
    req = ForecastRequest(
        history=[{"time": t, "name": f.name, "value": v} for f, t, v in feats if f is not None and f.role == "measurement"],
        static=[{"name": f.name, "value": v} for f, t, v in feats if f is not None and f.role == "static"],
        plan=[{"name": names[int(d[1])], "time_h": d[0], "amount": d[2], "duration_h": d[3]} for d in record.doses.tolist()],
        query_times=[1.0])
    times, values, mask, static, doses, _ = request_tensors(req, meta)
    np.testing.assert_allclose(times.numpy(), record.times, rtol=1e-6, atol=1e-6, err_msg="pyfunc times")
    np.testing.assert_array_equal(mask.numpy(), record.mask, err_msg="pyfunc mask")
    np.testing.assert_allclose(_transformed(spec, values.numpy(), mask.numpy()), record.values, rtol=1e-6, atol=1e-6,
                               err_msg="pyfunc values")
    np.testing.assert_allclose(static.numpy(), record.static, rtol=1e-6, equal_nan=True, err_msg="pyfunc static")
    np.testing.assert_allclose(doses.numpy(), record.doses, rtol=1e-6, atol=1e-6, err_msg="pyfunc doses")


def check_subjects(records, normaliser, spec, tmp_path, source_of, n: int = 3, horizon_h: float = 6.0,
                   decoder: str = "latent"):
    """For ``n`` subjects: ``source_of(sid) -> (path, subject)`` is where its raw events are; the file
    reader, the stream and the pyfunc record must give its training tensors, and the exported
    forecast the training module's."""
    normaliser = _centre_unobserved(normaliser, records, spec)
    twin, scripted, meta = _export(spec, normaliser, tmp_path / "twin.pt", decoder)
    chosen = [r for r in records if len(r.times) > 3][:n]
    assert chosen, "no subject with a history"
    forecasts = 0
    for r in chosen:
        path, subject = source_of(r.subject_id)
        h = read_history(path, meta, subject=subject)
        assert h.subject_id == r.subject_id
        assert_same_tensors(spec, r, h)
        assert_same_stream(spec, r, meta, scripted, path, subject)
        assert_same_record(spec, r, meta, path, subject)
        forecasts += assert_same_forecast(twin, scripted, normaliser, spec, r, h, horizon_h)
    assert forecasts, "no subject had a forecast horizon to compare"
    return meta


# ---- synthetic ICU (embedded) ----

@pytest.mark.parametrize("decoder", ["latent", "anchored"])
def test_synthetic_icu_parity(tmp_path, decoder):
    loaded = SyntheticICUSource(n_patients=12, seed=0).load()
    spec = loaded.spec
    records, _ = tensorize(loaded.events, spec)
    norm = Normaliser.fit(records, len(spec.interventions))

    def source_of(sid):
        path = tmp_path / f"{sid}.csv"
        loaded.events.filter(pl.col("subject_id") == sid).write_csv(path)
        return path, None

    check_subjects(records, norm, spec, tmp_path, source_of, horizon_h=12.0, decoder=decoder)


# ---- glucose (simulated cohort, MEDS with timestamps) ----

@pytest.fixture(scope="module")
def glucose_cohort(tmp_path_factory):
    cache = tmp_path_factory.mktemp("glucose_cache")
    source = GlucoseSimSource(load_spec("glucose"), n_patients=4, days=1, seed=1, cache_dir=str(cache))
    return source, source.load()


@pytest.mark.parametrize("decoder", ["latent", "anchored"])
def test_glucose_parity(glucose_cohort, tmp_path, decoder):
    source, loaded = glucose_cohort
    norm = Normaliser.fit(loaded.records, len(loaded.spec.interventions))
    check_subjects(loaded.records, norm, loaded.spec, tmp_path, lambda sid: (source.cohort_dir(), sid), decoder=decoder)


def test_glucose_basal_written_as_the_contract_says_gives_the_training_doses_and_forecast(glucose_cohort, tmp_path):
    """docs/export.md: a dose row's amount is the total over duration_h. A plan that gives the day's
    basal insulin that way (units = U/h x hours) is the training batch's dose tensor, and the
    twin forecasts the same from it."""
    source, loaded = glucose_cohort
    spec = loaded.spec
    norm = Normaliser.fit(loaded.records, len(spec.interventions))
    twin, scripted, meta = _export(spec, norm, tmp_path / "twin.pt")
    record = loaded.records[0]
    events = pl.read_parquet(source.cohort_dir() / "data" / "*" / "*.parquet").filter(pl.col("subject_id") == record.subject_id)
    t0 = events["time"].min()
    hours = lambda t: (t - t0).total_seconds() / 3600.0  # noqa: E731
    basal = events.filter(pl.col("code") == "INSULIN//BASAL//U/h").sort("time")
    ends = events.filter(pl.col("code") == "INSULIN//BASAL_END").sort("time")["time"].to_list()
    plan = [{"name": "InsulinBasal", "time_h": hours(t), "amount": rate * (hours(e) - hours(t)), "duration_h": hours(e) - hours(t)}
            for t, rate, e in zip(basal["time"].to_list(), basal["numeric_value"].to_list(), ends)]
    assert plan and all(p["duration_h"] > 0 for p in plan)
    h = read_history(source.cohort_dir(), meta, subject=record.subject_id)
    others = h.doses[h.doses[:, 1] != 2]
    plan_rows = torch.tensor([[p["time_h"], 2.0, p["amount"], p["duration_h"]] for p in plan], dtype=torch.float32)
    doses = torch.cat([others, plan_rows])
    doses = doses[torch.argsort(doses[:, 0], stable=True)]
    train = torch.from_numpy(record.doses)
    train = train[torch.argsort(train[:, 0], stable=True)]
    torch.testing.assert_close(doses, train, rtol=1e-6, atol=1e-5)
    q = torch.tensor([18.0, 20.0, 23.5])
    with torch.no_grad():
        from_plan, _ = scripted.forecast(h.times, h.values, h.mask, h.static, doses, q)
        from_history, _ = scripted.forecast(h.times, h.values, h.mask, h.static, h.doses, q)
    torch.testing.assert_close(from_plan, from_history, rtol=1e-5, atol=1e-4)
    # The basal rate given as the amount (the old reading) is a different input, not the contract's.
    wrong = doses.clone()
    wrong[wrong[:, 1] == 2, 2] = wrong[wrong[:, 1] == 2, 2] / wrong[wrong[:, 1] == 2, 3]
    assert not torch.allclose(wrong, train)


# ---- PhysioNet 2012 (challenge archive -> importer -> MEDS) ----

def _physionet_parity(meds, tmp_path, n: int):
    spec = load_spec("physionet2012")
    loaded = MedsSource(str(meds), spec, cache_dir=str(tmp_path / "cache")).load()
    norm = Normaliser.fit(loaded.records, len(spec.interventions))
    return check_subjects(loaded.records, norm, spec, tmp_path, lambda sid: (meds, sid), n=n, horizon_h=24.0)


def test_physionet2012_parity_on_a_challenge_format_archive(tmp_path):
    rids = list(range(140001, 140007))
    extra = "02:00,HR,-1\n03:10,MAP,80\n03:10,MAP,90\n05:00,Lactate,2.1\n30:00,HR,300000\n40:00,HR,88\n"
    archive = make_archive(tmp_path / "set-a.tar.gz", {f"{r}.txt": record_text(r, extra) for r in rids})
    (tmp_path / "Outcomes-a.txt").write_text(outcomes_text(rids, {140002: 1}))
    import_physionet2012(archive, tmp_path / "Outcomes-a.txt", tmp_path / "meds")
    meta = _physionet_parity(tmp_path / "meds", tmp_path, n=3)
    assert meta["events"]["spec"]["window_start"] == {"code": "ICU_ADMISSION", "match": "exact"}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "physionet2012" / "set-a.tar.gz").exists(), reason="shared PhysioNet 2012 data not present")
def test_physionet2012_parity_on_set_a(tmp_path):
    pn = SHARED_DATA / "physionet2012"
    import_physionet2012(pn / "set-a.tar.gz", pn / "Outcomes-a.txt", tmp_path / "meds")
    _physionet_parity(tmp_path / "meds", tmp_path, n=5)


# ---- MIMIC-IV demo (MEDS with MIMIC codes) ----

def _mimic_subject(sid: int) -> list[tuple]:
    at = lambda h: T0 + timedelta(hours=h)  # noqa: E731
    rows = [(sid, at(-100), "LAB//220045//bpm", 60.0), (sid, at(-1), "SUBJECT_WEIGHT_AT_INFUSION//KG", 70.0 + sid),
            (sid, at(0), "ICU_ADMISSION//MICU", None), (sid, at(0.5), "MEDICATION//Aspirin//Given", None)]
    rows += [(sid, at(h), "LAB//220045//bpm", 80.0 + h) for h in (0.5, 1.0, 2.0, 4.0, 8.0, 30.0, 40.0)]
    rows += [(sid, at(1.0), "LAB//220181//mmHg", 70.0), (sid, at(1.0), "LAB//220052//mmHg", 74.0),  # two codes, one MAP channel
             (sid, at(2.0), "LAB//220621//mg/dL", 140.0), (sid, at(3.0), "LAB//220045//bpm", 1e6),
             (sid, at(3.0), "INFUSION_START//221906", 0.1), (sid, at(4.5), "INFUSION_END//221906", 9.0),
             (sid, at(4.5), "INFUSION_START//221906", 0.05), (sid, at(6.0), "INFUSION_END//221906", 4.5),
             (sid, at(10.0), "INFUSION_START//223258", 2.0), (sid, at(60.0), "LAB//220045//bpm", 90.0)]
    return sorted(rows, key=lambda r: r[1])


def test_mimic_iv_demo_parity_on_a_mimic_style_meds_folder(tmp_path):
    root = tmp_path / "mimic"
    write_events(root / "data" / "0.parquet", [r for s in range(1, 5) for r in _mimic_subject(s)])
    spec = load_spec("mimic_iv_demo")
    loaded = MedsSource(str(root), spec, cache_dir=str(tmp_path / "cache")).load()
    r = loaded.records[0]
    # norepinephrine 0.1 mcg/kg/min for 1.5 h = 9 mcg/kg; the open insulin rate runs to the window's end (38 h x 2 U/h)
    np.testing.assert_allclose(r.doses, [[3.0, 1, 9.0, 1.5], [4.5, 1, 4.5, 1.5], [10.0, 0, 76.0, 38.0]], rtol=1e-6)
    norm = Normaliser.fit(loaded.records, len(spec.interventions))
    check_subjects(loaded.records, norm, spec, tmp_path, lambda sid: (root, sid), horizon_h=12.0)


@pytest.mark.skipif(not (SHARED_DATA / "mimic-iv-demo-meds").exists(), reason="shared MIMIC-IV demo not present")
def test_mimic_iv_demo_parity_on_the_demo(tmp_path):
    root = SHARED_DATA / "mimic-iv-demo-meds"
    spec = load_spec("mimic_iv_demo")
    loaded = MedsSource(str(root), spec, cache_dir=str(tmp_path / "cache")).load()
    norm = Normaliser.fit(loaded.records, len(spec.interventions))
    with_doses = [r for r in loaded.records if len(r.doses) and len(r.times) > 3]
    check_subjects(with_doses, norm, spec, tmp_path, lambda sid: (root, sid), n=3, horizon_h=12.0)

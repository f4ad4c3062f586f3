"""Simulated T1D cohort: MEDS validity through the real readers, behaviour, counterfactual
arms, determinism, the cached source and a training step on it."""

import shutil

import numpy as np
import polars as pl
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_train
from twinode.cli.data import main as data_main
from twinode.apps.command_line import exit_code
from twinode.data.spec_files import load_spec
from twinode.data.simulators.glucose_behaviour import Behaviour, draw_plan
from twinode.data.simulators.glucose_cohort import ARMS, BASAL, BASAL_END, BOLUS, CGM, MEAL, WEIGHT
from twinode.data.simulators.glucose_eval import ArmForecasts, clarke_zones, forecast_arms, score, time_in_range
from twinode.data.simulators.glucose_source import GlucoseSimSource
from twinode.data.sources import MedsSource
from twinode.data.validate import validate


def main(argv: list[str]) -> int:
    """twinode-data in process: its exit code."""
    return exit_code(data_main, argv)

N, DAYS, SEED = 10, 1, 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("glucose") / "cohort"
    assert main(["simulate", "glucose", "--patients", str(N), "--days", str(DAYS), "--seed", str(SEED), "--out", str(out)]) == 0
    return out


def _events(root):
    return pl.read_parquet(root / "data" / "*" / "*.parquet").sort(["subject_id", "time"], maintain_order=True)


def test_cohort_is_valid_meds_for_the_glucose_spec(cohort):
    spec = load_spec("glucose")
    report, _ = validate(cohort, spec)
    assert report.subjects == N and report.usable_subjects == N
    # Only the basal end markers stay unmapped: infusion pairing reads them, no feature keeps them.
    n_end = _events(cohort).filter(pl.col("code") == BASAL_END).height
    assert dict(report.dropped) == {"unmapped_code": n_end}, report.dropped
    loaded = MedsSource(str(cohort), spec, use_cache=False).load()
    assert len(loaded.records) == N
    assert sorted(set(loaded.splits.values())) == ["held_out", "train", "tuning"]
    rec = loaded.records[0]
    assert rec.doses.shape[0] >= 4  # meals, boluses and the basal infusion


def test_cgm_every_five_minutes_and_interventions(cohort):
    ev = _events(cohort)
    cgm = ev.filter(pl.col("code") == CGM)
    per_subject = cgm.group_by("subject_id").agg(pl.len().alias("n"), pl.col("time").diff().drop_nulls().unique().alias("gaps"))
    assert per_subject["n"].to_list() == [DAYS * 288 + 1] * N
    assert all([d.total_seconds() for d in g.to_list()] == [300.0] for g in per_subject["gaps"])
    v = cgm["numeric_value"].to_numpy()
    assert 39 <= v.min() and v.max() <= 400
    meals = ev.filter(pl.col("code") == MEAL).group_by("subject_id").len()
    assert meals["len"].min() >= 3  # breakfast, lunch, dinner at least
    bolus_share = ev.filter(pl.col("code") == BOLUS).height / ev.filter(pl.col("code") == MEAL).height
    assert 0.5 < bolus_share < 1.5
    basal = dict(ev.filter(pl.col("code").is_in([BASAL, BASAL_END])).group_by("code").len().iter_rows())
    assert basal[BASAL] == basal[BASAL_END] >= N  # one run per rate: the programmed rate and temporary ones
    weights = ev.filter(pl.col("code") == WEIGHT)["numeric_value"].to_numpy()
    assert len(weights) == N and (weights > 15).all()
    truth = pl.read_parquet(cohort / "truth.parquet")
    assert truth.height == N * (DAYS * 288 + 1)
    noise = cgm["numeric_value"].to_numpy() - truth.sort(["subject_id", "minute"])["gsub_mg_dl"].to_numpy()
    assert 3 < np.abs(noise).mean() < 30  # a noisy sensor, not a copy of the truth


def test_counterfactual_arms_share_history_and_differ_after_branch(cohort):
    cf = cohort / "counterfactual"
    arms = pl.read_parquet(cf / "metadata" / "arms.parquet")
    held = pl.read_parquet(cohort / "metadata" / "subject_splits.parquet").filter(pl.col("split") == "held_out")["subject_id"]
    assert sorted(arms["factual_subject_id"].unique().to_list()) == sorted(held.to_list())
    assert sorted(arms["arm"].unique().to_list()) == sorted(ARMS)
    branch = arms["branch_minute"][0]
    truth = pl.read_parquet(cohort / "truth.parquet")
    cf_truth = pl.read_parquet(cf / "truth.parquet")
    for sid, fid, arm in arms.select("subject_id", "factual_subject_id", "arm").iter_rows():
        a = cf_truth.filter(pl.col("subject_id") == sid).sort("minute")
        f = truth.filter(pl.col("subject_id") == fid).sort("minute")
        before = a["minute"] <= branch
        np.testing.assert_array_equal(a.filter(before)["gsub_mg_dl"].to_numpy(), f.filter(before)["gsub_mg_dl"].to_numpy())
        after_a, after_f = a.filter(~before)["gsub_mg_dl"].to_numpy(), f.filter(~before)["gsub_mg_dl"].to_numpy()
        if arm in ("basal_suspend", "double_basal"):
            assert np.abs(after_a - after_f).max() > 1.0, arm
        if arm == "basal_suspend":
            assert after_a[-1] > after_f[-1]
        if arm == "double_basal":
            assert after_a[-1] < after_f[-1]
    report, _ = validate(cf, load_spec("glucose"))
    n_end = _events(cf).filter(pl.col("code") == BASAL_END).height
    assert n_end >= 2 * arms.height  # the branch starts a run of its own
    assert report.usable_subjects == arms.height and dict(report.dropped) == {"unmapped_code": n_end}


def test_same_seed_same_cohort_through_the_cached_source(cohort, tmp_path):
    source = GlucoseSimSource(load_spec("glucose"), n_patients=N, days=DAYS, seed=SEED, cache_dir=str(tmp_path))
    path = source.ensure_cohort()
    assert _events(path).equals(_events(cohort))
    assert pl.read_parquet(path / "counterfactual" / "truth.parquet").equals(pl.read_parquet(cohort / "counterfactual" / "truth.parquet"))
    stamp = (path / "metadata" / "dataset.json").stat().st_mtime_ns
    loaded = source.load()  # second use: no new simulation
    assert (path / "metadata" / "dataset.json").stat().st_mtime_ns == stamp
    assert len(loaded.records) == N and loaded.name.startswith("glucose_sim(n=10")


def test_behaviour_depends_on_seed_only():
    bw, cr, cf, basal = np.array([70.0, 30.0]), np.array([10.0, 25.0]), np.array([40.0, 80.0]), np.array([0.02, 0.008])
    a = draw_plan(np.random.default_rng(1), bw, cr, cf, basal, 2)
    b = draw_plan(np.random.default_rng(1), bw, cr, cf, basal, 2)
    c = draw_plan(np.random.default_rng(2), bw, cr, cf, basal, 2)
    assert torch.equal(a.meals_g, b.meals_g) and torch.equal(a.meal_bolus_u, b.meal_bolus_u)
    assert not torch.equal(a.meals_g, c.meals_g)
    assert a.meals_g.shape == (2, 2 * 1440)
    assert (a.meals_g > 0).sum(1).min() >= 6  # three meals a day
    assert a.meals_g[1].sum() < a.meals_g[0].sum()  # a 30 kg child eats less than a 70 kg adult


def test_missed_and_late_boluses_happen():
    n = 400
    ones = np.ones(n)
    plan = draw_plan(np.random.default_rng(0), 70 * ones, 10 * ones, 40 * ones, 0.02 * ones, 1, Behaviour(snack_prob=0.0))
    meals_per_patient = (plan.meals_g > 0).sum(1).float()
    boluses_per_patient = (plan.meal_bolus_u > 0).sum(1).float()
    missed = 1 - boluses_per_patient.sum() / meals_per_patient.sum()
    assert 0.05 < missed.item() < 0.16  # 10% missed (merged same-minute meals aside)
    first_meal = (plan.meals_g > 0).float().argmax(1)
    first_bolus = (plan.meal_bolus_u > 0).float().argmax(1)
    delay = first_bolus - first_meal
    bolused = delay.abs() <= 90  # the breakfast bolus was given (else the first bolus is lunch's)
    late = (delay[bolused] >= 15).float().mean().item()
    assert 0.10 < late < 0.24  # 15% of all boluses are late: 1/6 of those given


def test_experiment_glucose_composes_a_simulated_source(tmp_path):
    cfg = compose_train(tmp_path, ["experiment=glucose"])
    assert cfg.data.source._target_.endswith("GlucoseSimSource")
    assert cfg.registry.model_name == "twinode-glucose" and cfg.data.horizon_h == 6.0
    source = instantiate(cfg.data.source)
    assert [f.name for f in source.spec.features] if hasattr(source.spec, "features") else source.spec["features"]
    spec = load_spec("glucose")
    assert [f.name for f in spec.measurements] == ["CGM"]
    assert [f.name for f in spec.interventions] == ["Carbs", "InsulinBolus", "InsulinBasal"]
    assert spec.window_hours - cfg.data.horizon_h == 18.0  # the forecast cut is the counterfactual branch
    # The insulin channels' slow inputs, and every epoch trained (docs/counterfactual.md).
    assert list(cfg.model.twin.dose_time_scales) == [1.0, 3.0] and cfg.callbacks.early_stopping is None


@pytest.mark.slow
def test_a_twin_trains_on_the_cohort(cohort, tmp_path):
    from lightning.pytorch import Trainer

    from twinode.training.pipeline import build_twin

    cache = tmp_path / "cache"
    shutil.copytree(cohort, GlucoseSimSource(None, N, DAYS, SEED, cache_dir=str(cache)).cohort_dir())
    cfg = compose_train(tmp_path, ["experiment=glucose", f"data.source.n_patients={N}", f"data.source.seed={SEED}",
                                   f"data.source.cache_dir={cache}", "data.batch_size=4", "model.twin.latent_dim=8",
                                   "model.twin.hidden=16", "model.twin.encoder_hidden=16", "solver.step=2.0"])
    dm = instantiate(cfg.data)
    dm.setup()
    assert dm.spec.name == "glucose"
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    before = {k: v.clone() for k, v in lit.twin.state_dict().items()}
    Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False).fit(lit, datamodule=dm)
    assert any(not torch.equal(before[k], v) for k, v in lit.twin.state_dict().items())

    # The same twin, scripted as export does, answers the what-if evaluation.
    from twinode.export.torchscript import build_predictor

    predictor = torch.jit.script(build_predictor(lit.twin.eval(), dm.normaliser.as_dict(), dm.spec))
    arms = forecast_arms(predictor, cohort, dm.spec)
    assert [a.arm for a in arms] == ["factual", *ARMS]
    for a in arms:
        assert a.truth.shape == a.forecasts["twin"].shape == (1, 72) and np.isfinite(a.forecasts["twin"]).all()
    rows = score(arms)
    names = {"twin", "twin_plan_blind", "locf", "subject_mean", "population_mean", "bolus_rule"}
    assert {r["forecaster"] for r in rows} == names
    assert len(rows) == len(names) * len(arms) and all(np.isfinite(r["rmse_6h"]) for r in rows)
    # LOCF, the means and the plan-blind twin see the same inputs under every plan, so they miss
    # each arm's whole effect.
    for r in rows:
        if r["forecaster"] in ("locf", "subject_mean", "population_mean", "twin_plan_blind") and r["arm"] != "factual":
            assert r["effect_rmse_6h"] == pytest.approx(r["true_effect_rms_6h"], rel=1e-9)


def test_insulin_per_minute_and_the_bolus_rule_on_the_arms(cohort):
    """The arms' insulin differs from the factual plan only after the branch, by the arm's
    factors; the rule turns less insulin into higher glucose and more into lower."""
    from twinode.data.simulators.glucose_eval import insulin_per_minute
    from twinode.evaluation.bolus_rule import rule_effect

    arms = pl.read_parquet(cohort / "counterfactual" / "metadata" / "arms.parquet")
    branch = int(arms["branch_minute"][0])
    held = sorted(arms["factual_subject_id"].unique().to_list())
    patients = pl.read_parquet(cohort / "metadata" / "patients.parquet").sort("subject_id")
    cf = np.array([dict(zip(patients["subject_id"].to_list(), patients["cf_mg_dl_per_u"].to_list()))[i] for i in held])
    T = DAYS * 1440
    fact = insulin_per_minute(cohort, held, T)
    ev = _events(cohort).with_columns(((pl.col("time") - pl.col("time").min()).dt.total_minutes()).alias("minute"))
    bolus_pm, basal_pm = np.zeros_like(fact), np.zeros_like(fact)
    for k, sid in enumerate(held):
        mine = ev.filter(pl.col("subject_id") == sid)
        for m, u in mine.filter(pl.col("code") == BOLUS).select("minute", "numeric_value").iter_rows():
            bolus_pm[k, m] += u
        starts = mine.filter(pl.col("code") == BASAL).select("minute", "numeric_value").rows()
        ends = mine.filter(pl.col("code") == BASAL_END)["minute"].to_list()
        for (a, rate), b in zip(starts, ends):
            basal_pm[k, a:b] = rate / 60.0
    np.testing.assert_allclose(fact, bolus_pm + basal_pm, atol=1e-5)
    assert (np.diff(basal_pm, axis=1) != 0).any()  # temporary rates: the basal is not one rate all day
    query = branch + 5 * np.arange(1, 73)
    for arm, (bolus_factor, basal_factor) in ARMS.items():
        ids = arms.filter(pl.col("arm") == arm).sort("factual_subject_id")["subject_id"].to_list()
        change = insulin_per_minute(cohort / "counterfactual", ids, T) - fact
        assert np.abs(change[:, :branch]).max() == 0
        expected = (bolus_factor - 1.0) * bolus_pm[:, branch:] + (basal_factor - 1.0) * basal_pm[:, branch:]
        np.testing.assert_allclose(change[:, branch:], expected, atol=1e-5)
        effect = rule_effect(change, cf, query)
        assert effect.shape == (len(held), 72)
        total = change.sum(1)
        moved = np.abs(total) > 0.05
        assert moved.any()
        # Less insulin -> glucose higher; more -> lower; zero change -> no effect.
        np.testing.assert_array_equal(np.sign(effect[moved, -1]), -np.sign(total[moved]))
        assert np.all(effect[~moved, -1] == pytest.approx(0.0, abs=0.05 * cf.max()))


def test_scores_a_perfect_and_a_plan_blind_forecaster():
    truth = {"factual": np.array([[100.0] * 72]), "no_bolus": np.array([[100.0 + i for i in range(72)]])}
    arms = [ArmForecasts(arm, t, {"perfect": t.copy(), "blind": truth["factual"].copy()}) for arm, t in truth.items()]
    rows = {(r["arm"], r["forecaster"]): r for r in score(arms)}
    perfect = rows["no_bolus", "perfect"]
    assert perfect["rmse_6h"] == 0 and perfect["effect_rmse_6h"] == 0 and perfect["clarke_ab_pct"] == 100
    blind = rows["no_bolus", "blind"]
    assert blind["rmse_6h"] == blind["effect_rmse_6h"] == blind["true_effect_rms_6h"] == 71.0
    assert blind["rmse_0.5h"] == 5.0 and blind["rmse_2h"] == 23.0
    assert blind["tir_abs_error_pp"] == 0  # 100..171 mg/dL is all in range, as is 100
    low = np.full((1, 72), 60.0)
    far = score([ArmForecasts("factual", low, {"high": low + 90.0})])[0]
    assert far["tir_abs_error_pp"] == 100 and far["clarke_ab_pct"] == 0  # 150 for a true 60: zone D


def test_clarke_zones_and_time_in_range():
    ref = np.array([100, 60, 250, 50, 300, 150, 200])
    pred = np.array([110, 65, 60, 200, 140, 300, 300])
    assert clarke_zones(ref, pred).tolist() == ["A", "A", "E", "E", "D", "C", "B"]
    assert time_in_range(np.array([[60.0, 70.0, 180.0, 181.0]])).tolist() == [0.5]


def test_doubled_boluses_and_temporary_basal_rates_happen():
    n = 400
    ones = np.ones(n)
    bh = Behaviour(snack_prob=0.0)
    plan = draw_plan(np.random.default_rng(0), 70 * ones, 10 * ones, 40 * ones, 0.02 * ones, 1, bh)
    ev = plan.events
    meals = int((plan.meals_g > 0).sum())
    doubles = int((ev["kind"] == "double_bolus").sum())
    assert 0.02 < doubles / meals < 0.08  # 5% of given boluses
    temp = ev["kind"] == "temp_basal"
    assert 0.8 < temp.sum() / n < 1.2  # two chances of 1/2 a day
    assert set(np.unique(ev["factor"][temp])) == set(bh.temp_basal_factors)
    rate = plan.basal_rate_u_per_min.numpy()
    basal = plan.basal_u_per_min.numpy()
    # Every labelled temporary rate is in the basal at its start, unless one drawn later covers it.
    rows, starts, durs, factors = (ev[k][temp] for k in ("row", "minute", "duration_min", "factor"))
    for j in range(len(rows)):
        later = np.arange(len(rows)) > j
        covered = later & (rows == rows[j]) & (starts <= starts[j]) & (starts + durs > starts[j])
        assert basal[rows[j], starts[j]] == pytest.approx(rate[rows[j]] * factors[j]) or covered.any()
    untouched = ~np.isin(np.arange(n), ev["row"][temp])
    assert np.all(basal[untouched] == rate[untouched, None])


def test_a_behaviour_without_doubles_or_temporary_rates_draws_the_earlier_plans():
    """Switched off, the new decisions draw no random numbers: the evaluation worlds
    (apps.glucose_world) keep the patients and plans they were measured on."""
    from twinode.apps.glucose_world import WORLD_BEHAVIOUR

    bw, cr, cf, basal = np.array([70.0, 30.0, 55.0]), np.array([10.0, 25.0, 12.0]), np.array([40.0, 80.0, 50.0]), np.array([0.02, 0.008, 0.015])
    plan = draw_plan(np.random.default_rng(7), bw, cr, cf, basal, 2, WORLD_BEHAVIOUR)
    assert not (plan.events["kind"] == "temp_basal").any() and not (plan.events["kind"] == "double_bolus").any()
    assert torch.equal(plan.basal_u_per_min, plan.basal_rate_u_per_min[:, None].expand(-1, 2 * 1440))
    # The same stream as a behaviour written before these knobs existed: meals, boluses, basal, acceptances.
    rng = np.random.default_rng(7)
    ref = draw_plan(rng, bw, cr, cf, basal, 2, WORLD_BEHAVIOUR)
    assert torch.equal(ref.meal_bolus_u, plan.meal_bolus_u) and torch.equal(ref.correction_accept, plan.correction_accept)
    assert rng.random() == _stream_after_legacy_plan(bw, cr, cf, basal)


def _stream_after_legacy_plan(bw, cr, cf, basal) -> float:
    """The next random number after the cohort-v1 plan draws (meal times, sizes, carb errors,
    bolus timing per slot, snack choice per day, basal factor, acceptances, glucose scale)."""
    rng = np.random.default_rng(7)
    B, T = len(bw), 2 * 1440
    for _ in range(2):
        rng.random(B)  # snack
        for _ in range(4):
            rng.normal(0, 1, B), rng.normal(0, 1, B), rng.normal(0, 1, B), rng.random(B)
            rng.uniform(0, 1, B), rng.uniform(0, 1, B)
    rng.normal(0, 1, B)
    rng.random((B, T))
    rng.normal(0, 1, B)
    return rng.random()


def test_widened_plans_touch_only_the_chosen_rows_and_are_labelled():
    from twinode.data.simulators.glucose_behaviour import TrainingVariation, widen_plan

    n = 300
    ones = np.ones(n)
    plan = draw_plan(np.random.default_rng(1), 70 * ones, 10 * ones, 40 * ones, 0.02 * ones, 1, Behaviour(snack_prob=0.0))
    before_bolus, before_basal = plan.meal_bolus_u.clone(), plan.basal_u_per_min.clone()
    n_events = len(plan.events["kind"])
    chosen = np.arange(0, n, 2)
    var = TrainingVariation(doubled_dose_prob=0.5, long_temp_basal_prob=0.5)
    widen_plan(plan, chosen, np.random.default_rng(2), var)
    others = np.setdiff1d(np.arange(n), chosen)
    assert torch.equal(plan.meal_bolus_u[others], before_bolus[others])
    assert torch.equal(plan.basal_u_per_min[others], before_basal[others])
    ev = {k: v[n_events:] for k, v in plan.events.items()}
    assert set(ev["row"].tolist()) <= set(chosen.tolist())
    doubled = ev["kind"] == "double_bolus"
    assert 0.35 < doubled.sum() / len(chosen) < 0.65
    for r, m, units in zip(ev["row"][doubled], ev["minute"][doubled], ev["units"][doubled]):
        assert float(plan.meal_bolus_u[r, m]) == pytest.approx(2 * units) and float(before_bolus[r, m]) == pytest.approx(units)
    temp = ev["kind"] == "temp_basal"
    assert 0.35 < temp.sum() / len(chosen) < 0.65
    lo, hi = var.long_temp_basal_min
    for r, m, dur, f in zip(ev["row"][temp], ev["minute"][temp], ev["duration_min"][temp], ev["factor"][temp]):
        assert dur <= hi and (dur >= lo or m + dur == 1440)
        seg = plan.basal_u_per_min[r, m: m + int(dur)]
        assert torch.allclose(seg, plan.basal_rate_u_per_min[r] * f)


def test_training_variation_leaves_the_held_out_subjects_and_their_arms_alone(tmp_path):
    from twinode.data.simulators.glucose_cohort import generate_glucose_cohort

    plain, wide = tmp_path / "plain", tmp_path / "wide"
    from twinode.data.simulators.glucose_behaviour import TrainingVariation

    generate_glucose_cohort(plain, 20, 1, 5)
    generate_glucose_cohort(wide, 20, 1, 5, training_variation=TrainingVariation())
    for part in ("data/held_out/0.parquet", "counterfactual/truth.parquet", "counterfactual/data/held_out/0.parquet",
                 "metadata/subject_splits.parquet"):
        assert pl.read_parquet(plain / part).equals(pl.read_parquet(wide / part)), part
    train_plain, train_wide = (pl.read_parquet(p / "data/train/0.parquet") for p in (plain, wide))
    assert not train_plain.equals(train_wide)
    kinds = pl.read_parquet(wide / "metadata/behaviour.parquet")["kind"].to_list()
    assert kinds.count("temp_basal") > pl.read_parquet(plain / "metadata/behaviour.parquet")["kind"].to_list().count("temp_basal")


def test_effect_in_sensor_range_and_its_floor():
    """A truth above the sensor's 400 mg/dL: a forecaster that returns the clamped truth is
    exact in the sensor's range and pays exactly the floor against the raw truth."""
    from twinode.data.simulators.glucose_eval import summary_markdown

    fact = np.full((2, 72), 150.0)
    arm = fact.copy()
    arm[0, -1], arm[1, -1] = 600.0, 250.0
    clamped = np.clip(arm, 39.0, 400.0)
    forecasts = {"factual": {"clamped": fact, "locf": fact + 10.0}, "basal_suspend": {"clamped": clamped, "locf": fact + 10.0}}
    rows = {(r["arm"], r["forecaster"]): r for r in score([ArmForecasts(a, t, forecasts[a]) for a, t in
                                                             (("factual", fact), ("basal_suspend", arm))])}
    r = rows["basal_suspend", "clamped"]
    assert r["effect_rmse_6h_sensor"] == 0.0
    assert r["effect_floor_6h"] == pytest.approx(np.sqrt(200.0 ** 2 / 2)) == r["effect_rmse_6h"]
    assert r["true_effect_rms_6h_sensor"] == pytest.approx(np.sqrt((250.0 ** 2 + 100.0 ** 2) / 2))
    assert "| basal_suspend | clamped | 141.4 |" in summary_markdown(list(rows.values()))


def test_effect_time_course_reads_scale_and_timing():
    """A forecaster with half the true effect: slope 0.5, correlation 1, per hour."""
    from twinode.data.simulators.glucose_eval import effect_time_course

    fact = np.full((3, 72), 120.0)
    ramp = np.linspace(0.0, 1.0, 72)[None, :] * np.array([[30.0], [60.0], [90.0]])
    arms = [ArmForecasts("factual", fact, {"twin": fact.copy()}),
            ArmForecasts("basal_suspend", fact + ramp, {"twin": fact + 0.5 * ramp})]
    table = effect_time_course(arms, hours=(6,))
    row = [line for line in table.splitlines() if line.startswith("| basal_suspend | 6 |")][0].split("|")
    assert float(row[-3]) == pytest.approx(1.0, abs=1e-2) and float(row[-2]) == pytest.approx(0.5, abs=1e-2)
    assert float(row[3]) == pytest.approx(60.0, abs=0.1) and float(row[5]) == pytest.approx(30.0, abs=0.1)

import numpy as np
import polars as pl

from twinode.data.simulators.synthetic_icu import generate_cohort, map_dose_response, patients


def test_counterfactual_truth_is_zero_for_equal_plans_and_positive_after_an_extra_dose():
    q = np.arange(0.0, 24.0, 0.5)
    base = np.array([[2.0, 8.0]])
    same = map_dose_response(2.0, 24.0, base, base, q)
    assert np.allclose(same, 0.0)
    extra = map_dose_response(2.0, 24.0, np.array([[2.0, 8.0], [5.0, 10.0]]), base, q)
    assert np.allclose(extra[q < 5.0], 0.0)  # nothing changes before the extra dose
    peak = extra.argmax()
    assert extra[peak] > 3.0 and 5.5 < q[peak] < 10.0  # a lift that peaks a few hours later
    assert extra[-1] < extra[peak] / 2  # and wears off with the drug


def test_patients_are_the_ones_the_cohort_simulated():
    """Subjects with a high drug Emax respond more: the observed MAP rise after doses tracks Emax."""
    n = 200
    ev = generate_cohort(n, seed=3)
    p = patients(n, seed=3)
    doses = ev.filter(pl.col("code") == "VASO").select("subject_id", pl.col("time").alias("t_dose"))
    maps = ev.filter(pl.col("code") == "MAP").join(doses, on="subject_id")
    rise = (maps.with_columns((pl.col("time") - pl.col("t_dose")).alias("dt"))
            .group_by("subject_id")
            .agg(pl.col("numeric_value").filter((pl.col("dt") > 0.5) & (pl.col("dt") <= 3)).mean().alias("after"),
                 pl.col("numeric_value").filter((pl.col("dt") > -2) & (pl.col("dt") <= 0)).mean().alias("before"))
            .drop_nulls())
    sid = rise["subject_id"].to_numpy()
    lift = (rise["after"] - rise["before"]).to_numpy()
    assert np.corrcoef(p["emax"][sid], lift)[0, 1] > 0.1
    assert np.allclose(p["age"][ev.filter(pl.col("code") == "AGE").sort("subject_id")["subject_id"].to_numpy()],
                       ev.filter(pl.col("code") == "AGE").sort("subject_id")["numeric_value"].to_numpy(), atol=1e-3)


def test_the_ideal_observer_learns_each_subjects_drug_effect_from_the_map_history():
    """The Kalman filter with the simulator's own equations narrows emax's prior toward the
    subject's true value, and its lift follows the truth better than the plan alone does."""
    from twinode.data.simulators.synthetic_icu_observer import EMAX_PRIOR, emax_posterior, ideal_lift

    n, cut = 60, 40.0
    ev = generate_cohort(n, seed=5)
    p = patients(n, seed=5)
    errors, prior_errors, ideal, pop, truth = [], [], [], [], []
    for i in range(n):
        sub = ev.filter(pl.col("subject_id") == i)
        maps = sub.filter((pl.col("code") == "MAP") & (pl.col("time") <= cut))
        doses = sub.filter(pl.col("code") == "VASO").select("time", "numeric_value").to_numpy().astype(float)
        past = doses[doses[:, 0] <= cut]
        if len(past) < 2:
            continue
        t, v = maps["time"].to_numpy(), maps["numeric_value"].to_numpy().astype(float)
        mean, var, log_ev = emax_posterior(t, v, past, cut, p["half_life"][i], p["age"][i])
        assert var < EMAX_PRIOR[1] and np.isfinite(log_ev)
        errors.append(abs(mean - p["emax"][i]))
        prior_errors.append(abs(EMAX_PRIOR[0] - p["emax"][i]))
        plan = np.vstack([past, [[cut + 1.0, 10.0]]])
        q = np.arange(cut + 1.5, cut + 5.01, 0.5)
        ideal.append(ideal_lift(t, v, past, plan, cut, p["age"][i], q).max())
        pop.append(map_dose_response(2.25, 24.0, plan, past, q).max())
        truth.append(map_dose_response(p["half_life"][i], p["emax"][i], plan, past, q).max())
    assert len(errors) >= 10
    assert np.mean(errors) < 0.95 * np.mean(prior_errors)  # weakly: a few doses say little about emax
    corr = lambda a, b: np.corrcoef(a, b)[0, 1]
    assert corr(ideal, truth) > corr(pop, truth) + 0.02

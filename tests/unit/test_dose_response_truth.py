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

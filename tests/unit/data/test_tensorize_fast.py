"""The vectorised tensorize gives the same records and report as the per-subject reference."""

import numpy as np
import polars as pl
import pytest

from twinode.data.schema import FeatureSpec
from twinode.data.simulators import synthetic_icu
from twinode.data.tensorize import tensorize
from twinode.errors import DataError

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("reference_tensorize", Path(__file__).with_name("reference_tensorize.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
reference_tensorize = _mod.reference_tensorize


def _assert_same(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.subject_id == rb.subject_id
        for k in ("times", "values", "mask", "doses", "static"):
            np.testing.assert_allclose(getattr(ra, k), getattr(rb, k), rtol=1e-6, err_msg=k)
        assert (np.isnan(ra.outcome) and np.isnan(rb.outcome)) or ra.outcome == rb.outcome


def test_matches_reference_on_synthetic_cohort():
    ev = synthetic_icu.generate_cohort(60, seed=3)
    spec = synthetic_icu.feature_spec()
    new, rep = tensorize(ev, spec)
    old, old_rep = reference_tensorize(ev, spec)
    _assert_same(new, old)
    assert rep.as_dict() == old_rep.as_dict()


def test_matches_reference_with_duplicates_ranges_and_log1p():
    spec = FeatureSpec.from_dict({"features": [
        {"name": "A", "role": "measurement", "valid_range": [0, 10], "duplicates": "max"},
        {"name": "B", "role": "measurement", "transform": "log1p", "duplicates": "last"},
        {"name": "D", "role": "intervention"},
        {"name": "S", "role": "static"},
        {"name": "Y", "role": "outcome"}]})
    ev = pl.DataFrame({
        "subject_id": [2, 2, 2, 2, 1, 1, 1, 1, 1, 3],
        "time": [1.0, 1.0, 2.0, 0.5, 0.0, 3.0, 3.0, 4.0, 0.0, 1.0],
        "code": ["A", "A", "B", "D", "S", "A", "A", "ZZ", "Y", "A"],
        "numeric_value": [1.0, 5.0, 3.0, 2.0, 7.0, 11.0, 4.0, 1.0, 1.0, 2.0],
    }, schema_overrides={"numeric_value": pl.Float32})
    new, rep = tensorize(ev, spec)
    old, old_rep = reference_tensorize(ev, spec)
    _assert_same(new, old)
    assert rep.as_dict() == old_rep.as_dict()
    assert rep.dropped["out_of_range:A"] == 1 and rep.dropped["unmapped_code"] == 1
    r2 = next(r for r in new if r.subject_id == 2)
    assert r2.values[0, 0] == 5.0  # duplicates: max


def test_null_static_and_dose_values_are_counted_not_crashing():
    spec = FeatureSpec.from_dict({"features": [
        {"name": "A", "role": "measurement"}, {"name": "D", "role": "intervention"}, {"name": "S", "role": "static"}]})
    ev = pl.DataFrame({"subject_id": [1, 1, 1], "time": [0.0, 1.0, 0.0], "code": ["A", "D", "S"],
                       "numeric_value": [1.0, None, None]}, schema_overrides={"numeric_value": pl.Float32})
    recs, rep = tensorize(ev, spec)
    assert rep.dropped["missing_value"] == 2
    assert len(recs[0].doses) == 0 and np.isnan(recs[0].static[0])


def test_reject_out_of_range_names_subject_and_code():
    spec = FeatureSpec.from_dict({"features": [{"name": "A", "role": "measurement", "valid_range": [0, 1], "out_of_range": "reject"}]})
    ev = pl.DataFrame({"subject_id": [7], "time": [0.0], "code": ["A"], "numeric_value": [3.0]})
    with pytest.raises(DataError, match=r"subject=7, code=A"):
        tensorize(ev, spec)


def test_nan_measurement_is_missing_not_out_of_range():
    spec = FeatureSpec.from_dict({"features": [{"name": "A", "role": "measurement", "valid_range": [0, 10]}]})
    ev = pl.DataFrame({"subject_id": [1, 1], "time": [0.0, 1.0], "code": ["A", "A"], "numeric_value": [float("nan"), 2.0]})
    recs, rep = tensorize(ev, spec)
    assert rep.dropped == {"missing_value": 1}
    assert recs[0].times.tolist() == [1.0]

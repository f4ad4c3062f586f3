"""A plan written as a mapping is one dose or a {label, doses} plan; anything else is refused."""

from __future__ import annotations

import pytest

from twinode.errors import DataError
from twinode.export.plan_mapping import plan_from_mapping


def test_a_mapping_with_dose_fields_is_one_dose():
    label, doses = plan_from_mapping({"name": "VASO", "time_h": 2.0, "amount": 8.0}, "vaso", "vaso.yaml")
    assert label == "vaso" and doses == [{"name": "VASO", "time_h": 2.0, "amount": 8.0}]
    label, doses = plan_from_mapping({"label": "one", "name": "VASO", "time_h": 2, "amount": 8, "duration_h": 1}, "x")
    assert label == "one" and doses[0]["duration_h"] == 1


def test_a_plan_mapping_keeps_its_label_and_doses():
    assert plan_from_mapping({"label": "a", "doses": [{"name": "VASO"}]}, "x") == ("a", [{"name": "VASO"}])
    assert plan_from_mapping({"doses": None}, "x") == ("x", [])
    assert plan_from_mapping({"label": "nothing"}, "x") == ("nothing", [])


@pytest.mark.parametrize("data, match", [
    ({"name": "VASO", "time_h": 2, "amout": 8}, r"unknown key\(s\) \['amout'\] in a one-dose plan"),
    ({"label": "a", "doses": [], "dose": {}}, r"unknown key\(s\) \['dose'\] beside 'doses'"),
    ({"plans": [{"name": "VASO"}]}, r"unknown key\(s\) \['plans'\]"),
])
def test_unknown_keys_are_errors(data, match):
    with pytest.raises(DataError, match=match):
        plan_from_mapping(data, "x", "plan.yaml")

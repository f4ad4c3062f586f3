"""FeatureSpec validation (pydantic models behind twinode's ConfigError): each message names
the field, the feature and, for a file, the file; the planning fields round-trip; specs
without them keep their fingerprint."""

from __future__ import annotations

import dataclasses
import json

import pytest

from twinode.data.schema import FeatureSpec
from twinode.data.spec_files import load_spec
from twinode.errors import ConfigError

HR = {"name": "HR", "role": "measurement", "unit": "bpm", "valid_range": [20, 250]}


def _error(features, **extra) -> str:
    with pytest.raises(ConfigError) as e:
        FeatureSpec.from_dict({"features": features, **extra})
    return str(e.value)


@pytest.mark.parametrize("feature, message", [
    ({"name": "HR", "role": "measurment"}, "config key 'features.HR.role' got 'measurment'; allowed: measurement, intervention, static, outcome"),
    ({**HR, "valid_range": [250, 20]}, "config key 'features.HR.valid_range' got [250, 20]. expected [low, high] with low < high"),
    ({**HR, "valid_range": ["low", 20]}, "config key 'features.HR.valid_range' got ['low', 20]. expected a number"),
    ({**HR, "transform": "log"}, "config key 'features.HR.transform' got 'log'; allowed: identity, log1p"),
    ({**HR, "colour": "red"}, "config key 'features[0].colour' got 'red'; allowed: code, duplicates"),
    ({"role": "measurement"}, "config key 'features[1]' got {'role': 'measurement'}. each feature needs 'name' and 'role'"),
    ({**HR, "match": "regex", "code": "("}, "config key 'features.HR.code' got '('. not a valid regex"),
    ({"name": "V", "role": "intervention", "value": "rate"}, "config key 'features.V.value' got 'rate'. value: rate is for interventions of kind: infusion"),
    ({"name": "V", "role": "intervention", "kind": "bolus", "end_code": "STOP"}, "end_code is for interventions of kind: infusion"),
    ({"name": "V", "role": "intervention", "effect_peak_h": 0}, "config key 'features.V.effect_peak_h' got 0.0. hours > 0"),
    ({**HR, "target_range": [180, 70]}, "config key 'features.HR.target_range' got [180, 70]. expected [low, high] with low < high"),
    ({"name": "V", "role": "intervention", "target_range": [1, 2]}, "target_range is for measurements"),
    ({"name": "V", "role": "intervention", "max_dose": -1}, "config key 'features.V.max_dose' got -1.0. max_dose is a number > 0, for interventions"),
    ({**HR, "min_spacing_h": 2}, "config key 'features.HR.min_spacing_h' got 2.0. min_spacing_h is a number > 0, for interventions"),
])
def test_each_error_names_the_feature_and_field(feature, message):
    features = [feature] if feature.get("role") == "measurement" and "name" in feature else [HR, feature]
    assert message in _error(features)


def test_spec_level_errors():
    assert "a FeatureSpec is a mapping with a 'features' list" in str(pytest.raises(ConfigError, FeatureSpec.from_dict, [1]).value)
    assert "config key 'window_hours' got 'two days'. expected a number" in _error([HR], window_hours="two days")
    assert "config key 'window_start.match' got 'fuzzy'; allowed: exact, prefix, regex" in _error(
        [HR], window_start={"code": "ADMIT", "match": "fuzzy"})
    assert "feature names must be unique" in _error([HR, HR])
    assert "at least one measurement" in _error([{"name": "V", "role": "intervention"}])


def test_a_file_error_names_the_file(tmp_path):
    bad = tmp_path / "my_spec.yaml"
    bad.write_text("features:\n  - {name: HR, role: measurement, duplicates: median}\n")
    for load in (FeatureSpec.from_yaml, load_spec):
        with pytest.raises(ConfigError) as e:
            load(str(bad))
        text = str(e.value)
        assert text.startswith("config key 'features.HR.duplicates' got 'median'; allowed: mean, last, first, max, min")
        assert text.endswith(f"[file={bad}]")


def test_values_are_coerced_as_before():
    spec = FeatureSpec.from_dict({"features": [{**HR, "code": 220045}], "window_hours": "24"})
    f = spec.features[0]
    assert f.code == "220045" and f.valid_range == (20.0, 250.0) and spec.window_hours == 24.0
    with pytest.raises(ConfigError, match="features.HR.role"):  # a Feature built in code is checked too
        dataclasses.replace(f, role="vital")


def test_planning_fields_round_trip_and_stay_out_of_a_spec_without_them():
    plain = FeatureSpec.from_dict({"features": [HR, {"name": "V", "role": "intervention"}]})
    assert all(not {"target_range", "max_dose", "min_spacing_h"} & set(f) for f in plain.to_dict()["features"])
    spec = FeatureSpec.from_dict({"features": [{**HR, "target_range": [60, 100]},
                                               {"name": "V", "role": "intervention", "max_dose": 5, "min_spacing_h": 1}]})
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.features[0].target_range == (60.0, 100.0) and again.features[1].max_dose == 5.0

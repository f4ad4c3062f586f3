import json

import pytest

from twinode.apps.stream import EventStream
from twinode.errors import DataError


def events(lines, meta, **kw):
    return list(EventStream(lines, meta, "s.jsonl", **kw))


def test_json_lines_and_long_csv_give_the_same_events(glucose_twin):
    _, meta = glucose_twin
    js = ['{"time": 0, "code": "STATIC//AGE//years", "value": 40}', "",
          '{"time": 0.5, "name": "CGM", "numeric_value": 130.5}',
          '{"time": 0.5, "code": "INSULIN//BASAL//U/h", "value": 1.2}',
          '{"time": 1.0, "code": "Carbs", "value": 50, "duration_h": 0}']
    csv = ["subject_id,time,code,numeric_value,duration_h", "1,0,STATIC//AGE//years,40,", "1,0.5,CGM//mg/dL,130.5,",
           "1,0.5,InsulinBasal,1.2,", "1,1.0,MEAL//CHO//g,50,0"]
    a, b = events(js, meta), events(csv, meta)
    strip = lambda evs: [(e.time, e.role, e.index, e.value, e.duration_h) for e in evs]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) == [(0.0, "static", 2, 40.0, None), (0.5, "measurement", 0, 130.5, None),
                        (0.5, "intervention", 2, 1.2, None), (1.0, "intervention", 0, 50.0, 0.0)]
    assert [e.line for e in a] == [1, 3, 4, 5]


@pytest.mark.parametrize("bad, message", [
    ('{"time": 1, "code": "CGM", "value": 1', "not valid JSON"),
    ('{"time": 1, "code": "CGM"}', "needs time, code"),
    ('{"time": "noon", "code": "CGM", "value": 100}', "time (hours) must be a number"),
    ('{"time": 1, "code": "CGM", "value": "high"}', "value must be a number"),
    ('{"time": 1, "code": "LAB//K", "value": 4}', "unknown code 'LAB//K'"),
    ('{"time": 0.1, "code": "CGM", "value": 100}', "goes back"),
    ('{"time": 1, "code": "Carbs", "value": -5}', "amount must be >= 0"),
    ('[1, 2]', "expected a JSON object"),
])
def test_malformed_line_names_its_line_number(glucose_twin, bad, message):
    _, meta = glucose_twin
    lines = ['{"time": 0.5, "code": "CGM", "value": 120}', bad]
    with pytest.raises(DataError) as exc:
        events(lines, meta)
    assert message in str(exc.value) and "row=2" in str(exc.value) and "file=s.jsonl" in str(exc.value)


def test_long_format_needs_its_header_and_field_count(glucose_twin):
    _, meta = glucose_twin
    with pytest.raises(DataError, match="starts with the header.*row=1"):
        events(["1,0.5,CGM,120"], meta)
    with pytest.raises(DataError, match="expected 4 comma-separated fields.*row=3"):
        events(["subject_id,time,code,numeric_value", "1,0.5,CGM,120", "1,0.6,CGM"], meta)


def test_unknown_codes_can_be_skipped_and_counted(glucose_twin):
    _, meta = glucose_twin
    s = EventStream([json.dumps({"time": 0, "code": "X", "value": 1}), json.dumps({"time": 0, "code": "CGM", "value": 99})],
                    meta, skip_unknown=True)
    assert [e.value for e in s] == [99.0] and s.skipped == {"X": 1}


def test_missing_and_non_finite_values_are_counted_as_training_counts_them(glucose_twin):
    _, meta = glucose_twin
    lines = ['{"time": 0, "code": "CGM", "value": NaN}', '{"time": 0.1, "code": "CGM", "value": null}',
             '{"time": 0.2, "code": "CGM", "value": 120}']
    s = EventStream(lines, meta)
    assert [e.value for e in s] == [120.0] and s.dropped == {"non_finite_value": 1, "missing_value": 1}
    csv = EventStream(["subject_id,time,code,numeric_value", "1,0,CGM//mg/dL,", "1,0.5,CGM//mg/dL,130"], meta)
    assert [e.value for e in csv] == [130.0] and csv.dropped == {"missing_value": 1}

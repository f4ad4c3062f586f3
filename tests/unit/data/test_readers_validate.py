"""Readers and validation: every bad input gives a located DataError or a counted drop."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twinode.data.readers import hash_split, read_events
from twinode.data.schema import FeatureSpec
from twinode.data.validate import load_checked, validate
from twinode.errors import DataError

from conftest import TINY_SPEC, subject_events, write_events

SPEC = FeatureSpec.from_dict(TINY_SPEC)


def _csv(tmp_path, text: str, name="events.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_meds_folder_reads_all_shards_splits_and_metadata(tiny_meds):
    raw = read_events(tiny_meds)
    assert len(raw.files) == 2 and raw.time_is_absolute
    assert raw.events["subject_id"].n_unique() == 12
    assert raw.splits[1] == "train" and raw.splits[12] == "held_out"
    assert raw.metadata["dataset_name"] == "tiny"


def test_validate_report_counts_and_window_drops(tiny_meds):
    report, records = validate(tiny_meds, SPEC)
    assert report.subjects == 12 and report.usable_subjects == 12
    assert report.dropped["after_window"] == 12  # the HR at 30 h of each subject
    assert report.dropped["unmapped_code"] == 24  # ICU_ADMISSION and INFUSION_END rows
    hr = report.codes.filter(pl.col("code") == "LAB//HR").row(0, named=True)
    assert hr["events"] == 12 * 5 and hr["missing_rate"] == 0.0
    r = records[0]
    np.testing.assert_allclose(r.times, [0.5, 1.5, 2.0, 2.5, 3.5])  # hours from ICU admission
    assert r.static[0] == 61.0  # AGE recorded before the window start
    np.testing.assert_allclose(r.doses, [[3.0, 0, 2.0, 2.5]])  # infusion: start 3 h, paired end 5.5 h
    assert report.feature_missing == {"HR": 0.0, "GLU": 0.0}


def test_csv_with_float_hours(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0.5,LAB//HR,80\n1,1.5,LAB//HR,82\n1,0,ICU_ADMISSION//X,\n")
    checked = load_checked(p, SPEC)
    assert checked.events["time"].dtype == pl.Float64
    assert sorted(checked.events.filter(pl.col("code") == "LAB//HR")["time"].to_list()) == [0.5, 1.5]


def test_csv_with_iso_timestamps(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n3,2100-01-01T10:00:00,ICU_ADMISSION//X,\n"
                       "3,2100-01-01T12:30:00,LAB//HR,80\n")
    checked = load_checked(p, SPEC)
    assert checked.events.filter(pl.col("code") == "LAB//HR")["time"].to_list() == [2.5]


def test_missing_required_column(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1], "time": [0.0], "numeric_value": [1.0]}).write_parquet(p)
    with pytest.raises(DataError, match=r"missing required column\(s\) \['code'\].*file=.*x\.parquet"):
        read_events(p)


def test_string_times_in_parquet_are_a_type_error(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1], "time": ["2020-01-01"], "code": ["A"], "numeric_value": [1.0]}).write_parquet(p)
    with pytest.raises(DataError, match=r"column 'time' must be a timestamp or float hours, got String"):
        read_events(p)


def test_non_integer_subject_id_in_csv_names_row(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0,A,1\nabc,1,A,1\n")
    with pytest.raises(DataError, match=r"expects integers, got 'abc'.*row=1"):
        read_events(p)


def test_unparseable_time_names_subject_code_row(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0.5,LAB//HR,1\n2,yesterday,LAB//GLU,2\n")
    with pytest.raises(DataError, match=r"unparseable time 'yesterday'.*subject=2, code=LAB//GLU, row=1"):
        read_events(p)


def test_non_numeric_value_in_csv(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0.5,LAB//HR,high\n")
    with pytest.raises(DataError, match=r"expects numbers, got 'high'.*subject=1, code=LAB//HR, row=0"):
        read_events(p)


def test_negative_relative_time(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0.5,LAB//HR,1\n4,-2,LAB//HR,2\n")
    with pytest.raises(DataError, match=r"negative time -2.0 h.*subject=4, code=LAB//HR, row=1"):
        load_checked(p)


def test_infinite_time(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1, 1], "time": [0.0, float("inf")], "code": ["A", "B"], "numeric_value": [1.0, 2.0]}).write_parquet(p)
    with pytest.raises(DataError, match=r"non-finite time inf.*code=B, row=1"):
        load_checked(p)


def test_nan_and_inf_values_are_dropped_and_counted(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1, 1, 1, 1], "time": [0.0, 1.0, 2.0, 3.0], "code": ["ICU_ADMISSION//X", "LAB//HR", "LAB//HR", "LAB//HR"],
                  "numeric_value": [None, float("nan"), float("inf"), 80.0]}).write_parquet(p)
    report, records = validate(p, SPEC)
    assert report.dropped["non_finite_value"] == 2
    assert records[0].times.tolist() == [3.0]


def test_null_code_is_an_error_with_row(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1, 2], "time": [0.0, 1.0], "code": ["A", None], "numeric_value": [1.0, 2.0]}).write_parquet(p)
    with pytest.raises(DataError, match=r"null code.*subject=2.*row=1"):
        load_checked(p)


def test_empty_dataset(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame(schema={"subject_id": pl.Int64, "time": pl.Float64, "code": pl.String, "numeric_value": pl.Float32}).write_parquet(p)
    with pytest.raises(DataError, match="the dataset is empty"):
        load_checked(p)


def test_meds_folder_without_shards(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"no event shards found"):
        read_events(tmp_path)


def test_truncated_parquet(tmp_path):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": list(range(100)), "time": [0.0] * 100, "code": ["A"] * 100, "numeric_value": [1.0] * 100}).write_parquet(p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DataError, match=r"not a readable parquet file.*file=.*x\.parquet.*truncated or not parquet"):
        read_events(p)


def test_non_parquet_file_in_a_meds_folder(tmp_path, tiny_meds):
    (tiny_meds / "data" / "train" / "1.parquet").write_text("subject_id,time\n1,2\n")
    with pytest.raises(DataError, match=r"not a readable parquet file.*1\.parquet"):
        read_events(tiny_meds)


def test_unsorted_events_are_accepted_sorted_and_noted(tmp_path):
    rows = subject_events(1, [70, 71, 72]) + subject_events(2, [80, 81, 82])
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    a = write_events(tmp_path / "a" / "data" / "0.parquet", rows).parents[1]
    b = write_events(tmp_path / "b" / "data" / "0.parquet", shuffled).parents[1]
    ra, rec_a = validate(a, SPEC)
    rb, rec_b = validate(b, SPEC)
    assert any("not sorted" in n for n in rb.notes) and not any("not sorted" in n for n in ra.notes)
    for x, y in zip(rec_a, rec_b):
        assert x.subject_id == y.subject_id
        np.testing.assert_array_equal(x.times, y.times)
        np.testing.assert_array_equal(x.values, y.values)


def test_duplicate_rows_are_accepted_and_reported(tmp_path):
    rows = subject_events(1, [70, 71])
    p = write_events(tmp_path / "d" / "data" / "0.parquet", rows + rows[2:4]).parents[1]
    report, records = validate(p, SPEC)
    assert report.dropped["duplicate_row"] == 2
    assert any("duplicate" in n for n in report.notes)
    assert records[0].values[:, 0].tolist()[:2] == [70.0, 71.0]


def test_subject_without_window_start_is_counted(tmp_path):
    rows = subject_events(1, [70]) + [(9, r[1], r[2], r[3]) for r in subject_events(9, [90]) if not r[2].startswith("ICU")]
    p = write_events(tmp_path / "w" / "data" / "0.parquet", rows).parents[1]
    report, records = validate(p, SPEC)
    assert [r.subject_id for r in records] == [1]
    assert report.dropped["no_window_start"] == len(rows) - len(subject_events(1, [70]))


def test_bad_split_value(tiny_meds):
    pq.write_table(pa.table({"subject_id": pa.array([1], pa.int64()), "split": ["validation"]}),
                   tiny_meds / "metadata" / "subject_splits.parquet")
    with pytest.raises(DataError, match=r"unknown split 'validation'.*subject=1"):
        read_events(tiny_meds)


def test_hash_split_is_deterministic_and_roughly_80_10_10():
    splits = [hash_split(i) for i in range(5000)]
    assert splits == [hash_split(i) for i in range(5000)]
    share = {s: splits.count(s) / 5000 for s in ("train", "tuning", "held_out")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["tuning"] < 0.12 and 0.08 < share["held_out"] < 0.12


def test_empty_subject_id_cell_in_csv(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0,A,1\n,1,A,1\n")
    with pytest.raises(DataError, match=r"expects integers, got None.*row=1"):
        read_events(p)


def test_back_to_back_infusions_pair_with_their_own_end(tmp_path):
    p = _csv(tmp_path, "subject_id,time,code,numeric_value\n1,0,ICU_ADMISSION//X,\n1,0.5,LAB//HR,80\n"
                       "1,1,INFUSION_START//INS,2\n1,2,INFUSION_END//INS,2\n1,2,INFUSION_START//INS,4\n"
                       "1,5,INFUSION_END//INS,12\n1,6,INFUSION_START//INS,1\n")
    report, records = validate(p, SPEC)
    np.testing.assert_allclose(records[0].doses[:, [0, 2, 3]], [[1, 2, 1], [2, 4, 3], [6, 1, 0]])
    assert report.dropped["infusion_without_end:INS"] == 1


def test_every_row_is_used_or_counted(tiny_meds):
    report, records = validate(tiny_meds, SPEC)
    used = sum(int(r.mask.sum()) + len(r.doses) + int(np.isfinite(r.static).sum()) + int(np.isfinite(r.outcome))
               for r in records)
    assert used + sum(report.dropped.values()) == report.events == 12 * 11

"""PhysioNet 2012 importer: lossless, valid MEDS, deterministic splits, located errors."""

from __future__ import annotations

from pathlib import Path

import meds
import polars as pl
import pyarrow.parquet as pq
import pytest

from twinode.data.importers.physionet2012 import SERIES, import_physionet2012, raw_parameter_counts
from twinode.errors import DataError

from conftest import SHARED_DATA, make_archive, outcomes_text, record_text

PN = SHARED_DATA / "physionet2012"


def _events(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "data" / "**" / "*.parquet")


def _assert_lossless(archive: Path, out: Path) -> None:
    raw = raw_parameter_counts(archive)
    counts = dict(_events(out).group_by("code").len().iter_rows())
    for param, n in raw.items():
        if param == "RecordID":
            assert n == _events(out)["subject_id"].n_unique()
        else:
            assert counts.get(param, 0) + counts.get(f"STATIC//{param}", 0) == n, param


def _assert_meds_valid(out: Path) -> None:
    for shard in (out / "data").rglob("*.parquet"):
        meds.DataSchema.validate(pq.read_table(shard))
    meds.SubjectSplitSchema.validate(pq.read_table(out / "metadata" / "subject_splits.parquet"))
    meds.CodeMetadataSchema.validate(pq.read_table(out / "metadata" / "codes.parquet"))


def test_import_is_lossless_and_valid_meds(tiny_challenge, tmp_path):
    archive, outcomes = tiny_challenge
    out = tmp_path / "out"
    report = import_physionet2012(archive, outcomes, out)
    assert report.records == 10
    _assert_lossless(archive, out)
    _assert_meds_valid(out)
    ev = _events(out)
    one = ev.filter(pl.col("subject_id") == 140003)
    # descriptors: -1 is missing, not a value; the 00:07 Weight stays a time series
    assert one.filter(pl.col("code") == "STATIC//Height")["numeric_value"].to_list() == [None]
    assert one.filter(pl.col("code") == "STATIC//Weight")["numeric_value"].to_list() == [None]
    assert one.filter(pl.col("code") == "Weight")["numeric_value"].to_list() == [80.5]
    assert one.filter(pl.col("code") == "GCS").height == 1  # a series row among the 00:00 descriptors
    assert one.filter(pl.col("code") == "OUTCOME//IN_HOSPITAL_DEATH")["numeric_value"].to_list() == [1.0]
    assert one.filter(pl.col("code") == "OUTCOME//SOFA")["numeric_value"].to_list() == [None]
    hr = one.filter(pl.col("code") == "HR").sort("time")
    first = hr["time"][0] - one.filter(pl.col("code") == "ICU_ADMISSION")["time"][0]
    assert first.total_seconds() == 7 * 60
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert splits.height == 10 and set(splits["split"]) <= {"train", "tuning", "held_out"}


def test_import_is_deterministic(tiny_challenge, tmp_path):
    archive, outcomes = tiny_challenge
    import_physionet2012(archive, outcomes, tmp_path / "a")
    import_physionet2012(archive, outcomes, tmp_path / "b")
    for rel in ("data/train/0.parquet", "metadata/subject_splits.parquet", "metadata/dataset.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def _outcomes(tmp_path, rids):
    p = tmp_path / "Outcomes.txt"
    p.write_text(outcomes_text(rids))
    return p


@pytest.mark.parametrize("line, message", [
    ("25:99,HR,80\n", r"bad time '25:99'.*subject=140001, code=HR, row=16"),
    ("10:00,HR,high\n", r"non-numeric value 'high'.*subject=140001, code=HR, row=16"),
    ("10:00,HR\n", r"expected 3 fields Time,Parameter,Value, got '10:00,HR'.*row=16"),
])
def test_bad_record_lines_are_located(tmp_path, line, message):
    archive = make_archive(tmp_path / "a.tar.gz", {"140001.txt": record_text(140001, line)})
    with pytest.raises(DataError, match=message) as err:
        import_physionet2012(archive, _outcomes(tmp_path, [140001]), tmp_path / "out")
    assert "140001.txt" in str(err.value)


def test_record_without_header(tmp_path):
    text = record_text(140001).split("\n", 1)[1]
    archive = make_archive(tmp_path / "a.tar.gz", {"140001.txt": text})
    with pytest.raises(DataError, match=r"no 'Time,Parameter,Value' header.*140001\.txt, row=1"):
        import_physionet2012(archive, _outcomes(tmp_path, [140001]), tmp_path / "out")


def test_truncated_archive(tmp_path):
    records = {f"{r}.txt": record_text(r) * 30 for r in range(140001, 140031)}
    full = make_archive(tmp_path / "full.tar.gz", records)
    archive = make_archive(tmp_path / "a.tar.gz", records, truncate=full.stat().st_size // 2)
    with pytest.raises(DataError, match=r"truncated or not a tar.gz.*file=.*a\.tar\.gz"):
        import_physionet2012(archive, _outcomes(tmp_path, list(range(140001, 140031))), tmp_path / "out")


def test_empty_archive(tmp_path):
    archive = make_archive(tmp_path / "a.tar.gz", {})
    with pytest.raises(DataError, match=r"holds no record files"):
        import_physionet2012(archive, _outcomes(tmp_path, [1]), tmp_path / "out")


def test_archive_that_is_not_an_archive(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_text("Time,Parameter,Value\n")
    with pytest.raises(DataError, match=r"cannot read the archive"):
        import_physionet2012(archive, _outcomes(tmp_path, [1]), tmp_path / "out")


def test_outcomes_missing_a_record(tiny_challenge, tmp_path):
    archive, _ = tiny_challenge
    outcomes = _outcomes(tmp_path, list(range(140001, 140010)))  # 140010 left out
    with pytest.raises(DataError, match=r"1 records have no outcome row.*subject=140010"):
        import_physionet2012(archive, outcomes, tmp_path / "out")


def test_outcomes_row_without_record_id(tiny_challenge, tmp_path):
    archive, _ = tiny_challenge
    p = tmp_path / "Outcomes.txt"
    p.write_text(outcomes_text(list(range(140001, 140011))) + ",10,1,5,-1,0\n")
    with pytest.raises(DataError, match=r"missing or non-numeric RecordID.*row=12"):
        import_physionet2012(archive, p, tmp_path / "out")


def test_outcomes_not_csv(tiny_challenge, tmp_path):
    archive, _ = tiny_challenge
    p = tmp_path / "Outcomes.txt"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"outcomes file is not"):
        import_physionet2012(archive, p, tmp_path / "out")


@pytest.mark.skipif(not (PN / "set-a.tar.gz").exists(), reason="shared PhysioNet 2012 data not present")
def test_set_a_import(tmp_path):
    report = import_physionet2012(PN / "set-a.tar.gz", PN / "Outcomes-a.txt", tmp_path / "pn")
    assert report.records == 4000
    assert report.seconds < 60
    _assert_lossless(PN / "set-a.tar.gz", tmp_path / "pn")
    _assert_meds_valid(tmp_path / "pn")
    codes = set(_events(tmp_path / "pn")["code"].unique())
    assert set(SERIES) <= codes
    deaths = _events(tmp_path / "pn").filter(pl.col("code") == "OUTCOME//IN_HOSPITAL_DEATH")["numeric_value"]
    assert deaths.len() == 4000 and 0.10 < deaths.mean() < 0.18

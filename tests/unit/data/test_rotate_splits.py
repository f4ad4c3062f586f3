"""scripts/rotate_splits.py: a copy of a MEDS folder holding out another hash bucket, the
original untouched, and bad arguments refused with exit status 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl

from twinode.data.readers import hash_bucket, hash_split

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "rotate_splits.py"


def _module():
    spec = importlib.util.spec_from_file_location("rotate_splits", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _meds(root: Path, n: int = 300) -> Path:
    ids = list(range(1, n + 1))
    (root / "data" / "train").mkdir(parents=True)
    (root / "metadata").mkdir()
    pl.DataFrame({"subject_id": ids, "time": [0.0] * n, "code": ["HR"] * n, "numeric_value": [80.0] * n}) \
        .write_parquet(root / "data" / "train" / "0.parquet")
    pl.DataFrame({"subject_id": ids, "split": [hash_split(i) for i in ids]}).write_parquet(root / "metadata" / "subject_splits.parquet")
    return root


def test_rotated_copy_holds_out_the_named_bucket(tmp_path):
    meds = _meds(tmp_path / "meds")
    before = pl.read_parquet(meds / "metadata" / "subject_splits.parquet")
    out = tmp_path / "fold7" / "meds"
    assert _module().main(["--meds", str(meds), "--out", str(out), "--held-out", "7", "--tuning", "6"]) == 0
    after = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    for sid, split in after.iter_rows():
        b = hash_bucket(sid)
        assert split == ("held_out" if b == 7 else "tuning" if b == 6 else "train"), (sid, b, split)
    assert after.height == before.height and {"held_out", "tuning", "train"} == set(after["split"])
    assert pl.read_parquet(meds / "metadata" / "subject_splits.parquet").equals(before)  # the original is untouched
    assert (out / "data" / "train" / "0.parquet").is_file()


def test_fewer_training_buckets_drop_the_other_training_subjects(tmp_path):
    meds = _meds(tmp_path / "meds")
    out = tmp_path / "k2" / "meds"
    assert _module().main(["--meds", str(meds), "--out", str(out), "--held-out", "9", "--tuning", "8",
                           "--train-buckets", "2"]) == 0
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    buckets = {sid: hash_bucket(sid) for sid in splits["subject_id"]}
    assert set(buckets.values()) == {0, 1, 8, 9}
    for sid, split in splits.iter_rows():
        assert split == {8: "tuning", 9: "held_out"}.get(buckets[sid], "train")
    events = pl.read_parquet(out / "data" / "train" / "0.parquet")
    assert set(events["subject_id"]) == set(buckets)  # no other subject left to fall back to a hash split
    everyone = range(1, 301)
    assert splits.height == sum(hash_bucket(i) in (0, 1, 8, 9) for i in everyone) < 300


def test_bad_arguments_exit_2_and_write_nothing(tmp_path, capsys):
    meds = _meds(tmp_path / "meds")
    main = _module().main
    assert main(["--meds", str(meds), "--out", str(tmp_path / "a"), "--held-out", "7", "--tuning", "7"]) == 2
    assert main(["--meds", str(meds), "--out", str(tmp_path / "b"), "--held-out", "10", "--tuning", "1"]) == 2
    assert main(["--meds", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), "--held-out", "7", "--tuning", "6"]) == 2
    assert main(["--meds", str(meds), "--out", str(meds), "--held-out", "7", "--tuning", "6"]) == 2  # exists
    assert main(["--meds", str(meds), "--out", str(tmp_path / "d"), "--held-out", "9", "--tuning", "8",
                 "--train-buckets", "0"]) == 2
    pl.read_parquet(meds / "data" / "train" / "0.parquet").write_csv(meds / "data" / "train" / "1.csv")
    assert main(["--meds", str(meds), "--out", str(tmp_path / "e"), "--held-out", "9", "--tuning", "8",
                 "--train-buckets", "4"]) == 2
    err = capsys.readouterr().err
    assert "two different buckets" in err and "no subject splits" in err and "exists" in err
    assert "--train-buckets must be 1-8" in err and "parquet shards only" in err
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c", "d", "e"))

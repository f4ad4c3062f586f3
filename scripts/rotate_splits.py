"""Copy a MEDS folder with another fold held out: how much a held-out figure owes to the split.

The importers split subjects by a hash of their id into ten buckets: 0-7 train, 8 tuning, 9
held out (``twinode.data.readers.hash_split``). This writes a copy whose
``metadata/subject_splits.parquet`` holds out bucket ``--held-out`` and tunes on ``--tuning``
(every other bucket trains); the events are the same files. Train and evaluate on the copy as
on the original (docs/results.md, "The held-out figure and the split"):

    .venv/bin/python scripts/rotate_splits.py --meds data/physionet2012_meds --held-out 7 --tuning 6 \\
        --out /tmp/folds/h7/physionet2012_meds
    .venv/bin/twinode-train experiment=physionet2012 paths.data_dir=/tmp/folds/h7 logger=none

``--train-buckets N`` keeps only the first ``N`` of the eight training buckets (in ascending
order) and leaves every other training subject's events out of the copy: a learning curve on
the same tuning and held-out subjects (docs/results.md, "Where the forecast stands").
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import polars as pl

from twinode.data.readers import hash_bucket


def rotate(meds: Path, out: Path, held_out: int, tuning: int, train_buckets: int = 8) -> dict[str, int]:
    """Write the copy; returns the number of subjects per split."""
    if held_out == tuning or not (0 <= held_out <= 9 and 0 <= tuning <= 9):
        raise ValueError(f"--held-out and --tuning must be two different buckets 0-9, got {held_out} and {tuning}")
    if not 1 <= train_buckets <= 8:
        raise ValueError(f"--train-buckets must be 1-8 (of the eight training buckets), got {train_buckets}")
    splits_file = meds / "metadata" / "subject_splits.parquet"
    if not splits_file.is_file():
        raise FileNotFoundError(f"{splits_file}: no subject splits (is {meds} a MEDS folder written by twinode-data import?)")
    if out.exists():
        raise FileExistsError(f"{out} exists; give a new --out")
    shutil.copytree(meds, out)
    ids = pl.read_parquet(splits_file)["subject_id"]
    bucket = ids.map_elements(hash_bucket, return_dtype=pl.Int64)
    kept = [b for b in range(10) if b not in (held_out, tuning)][:train_buckets]
    split = (pl.when(pl.col("b") == held_out).then(pl.lit("held_out"))
             .when(pl.col("b") == tuning).then(pl.lit("tuning")).otherwise(pl.lit("train")))
    table = (pl.DataFrame({"subject_id": ids, "b": bucket})
             .filter(pl.col("b").is_in([held_out, tuning, *kept])).select("subject_id", split.alias("split")))
    table.write_parquet(out / "metadata" / "subject_splits.parquet")
    if train_buckets < 8:  # a subject missing from the splits would get its hash split back: drop its events
        keep = table["subject_id"].implode()
        shards = sorted(p for p in (out / "data").rglob("*") if p.is_file())
        if any(p.suffix != ".parquet" for p in shards):
            shutil.rmtree(out)
            raise ValueError("--train-buckets rewrites parquet shards only; convert the CSV shards first")
        for shard in shards:
            pl.read_parquet(shard).filter(pl.col("subject_id").is_in(keep)).write_parquet(shard)
    return dict(table.group_by("split").len().iter_rows())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meds", type=Path, required=True, help="a MEDS folder (data/, metadata/subject_splits.parquet)")
    ap.add_argument("--out", type=Path, required=True, help="the copy to write (must not exist)")
    ap.add_argument("--held-out", type=int, required=True, help="hash bucket 0-9 to hold out (the importers hold out 9)")
    ap.add_argument("--tuning", type=int, required=True, help="hash bucket 0-9 to tune on (the importers tune on 8)")
    ap.add_argument("--train-buckets", type=int, default=8,
                    help="train on the first N of the eight training buckets only (default 8: all of them)")
    args = ap.parse_args(argv)
    try:
        counts = rotate(args.meds, args.out, args.held_out, args.tuning, args.train_buckets)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("train", "tuning", "held_out")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

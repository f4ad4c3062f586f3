"""How much plan variation a simulated glucose cohort gives the twin to learn from.

A training window of ``experiment=glucose`` is a history up to a random cut (uniform in
``[min_history_h, window_h - horizon_h]``) and the ``horizon_h`` hours after it. A what-if
effect is learnable only where windows show the twin plans that differ from the usual one
while it forecasts. For each kind of labelled decision in ``metadata/behaviour.parquet``
(missed, late and doubled boluses, corrections, temporary basal rates by factor) this gives
the share of windows whose horizon holds one (a temporary rate counts where it overlaps the
horizon), over the cuts on a 5-min grid of every subject of the chosen splits.

    python -m twinode.data.simulators.glucose_variation COHORT_DIR [--split train]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

KINDS = ("missed_bolus", "late_bolus", "double_bolus", "correction", "temp_basal")


def _kind_labels(b: pl.DataFrame) -> pl.DataFrame:
    """Temporary basal rates split by what they do: suspend (0), lower (< 1), raise (> 1)."""
    tb = pl.col("kind") == "temp_basal"
    name = (pl.when(tb & (pl.col("factor") == 0)).then(pl.lit("temp_basal_suspend"))
            .when(tb & (pl.col("factor") < 1)).then(pl.lit("temp_basal_lower"))
            .when(tb).then(pl.lit("temp_basal_raise")).otherwise(pl.col("kind")))
    return b.with_columns(name.alias("label"))


def window_shares(cohort: str | Path, splits: tuple[str, ...] = ("train",), horizon_h: float = 6.0,
                  min_history_h: float = 6.0, window_h: float = 24.0, step_min: int = 5) -> dict[str, float]:
    """Share of forecast windows (subject x cut) whose horizon holds each kind of decision, and
    ``any`` of them (``any_insulin_change``: any but corrections, which follow the usual rule)."""
    cohort = Path(cohort)
    beh = cohort / "metadata" / "behaviour.parquet"
    if not beh.exists():
        raise FileNotFoundError(f"{beh}: this cohort has no labelled behaviour (simulate it again with twinode >= cohort v2)")
    split = pl.read_parquet(cohort / "metadata" / "subject_splits.parquet").filter(pl.col("split").is_in(list(splits)))
    ids = split["subject_id"].to_list()
    b = _kind_labels(pl.read_parquet(beh).filter(pl.col("subject_id").is_in(ids)))
    cuts = np.arange(int(min_history_h * 60), int((window_h - horizon_h) * 60) + 1, step_min)
    h = int(horizon_h * 60)
    labels = sorted(set(KINDS) | set(b["label"].unique().to_list()))
    hits = {k: np.zeros((len(ids), len(cuts)), bool) for k in labels}
    row = {sid: i for i, sid in enumerate(ids)}
    for sid, minute, kind, label, dur in b.select("subject_id", "minute", "kind", "label", "duration_min").iter_rows():
        end = minute + (int(dur) if kind == "temp_basal" and dur == dur else 0)
        # Horizon (cut, cut + h] holds [minute, end] when minute <= cut + h and end > cut.
        inside = (minute <= cuts + h) & (end > cuts)
        hits[label][row[sid]] |= inside
        if label != kind:
            hits[kind][row[sid]] |= inside
    out = {k: float(v.mean()) for k, v in hits.items()}
    out["any_insulin_change"] = float(np.logical_or.reduce([hits[k] for k in KINDS if k != "correction"]).mean())
    out["windows"] = float(len(ids) * len(cuts))
    return out


def event_counts(cohort: str | Path, splits: tuple[str, ...] = ("train",)) -> dict[str, float]:
    """Decisions per subject-day of each kind (labels as in :func:`window_shares`)."""
    cohort = Path(cohort)
    split = pl.read_parquet(cohort / "metadata" / "subject_splits.parquet").filter(pl.col("split").is_in(list(splits)))
    b = _kind_labels(pl.read_parquet(cohort / "metadata" / "behaviour.parquet").filter(
        pl.col("subject_id").is_in(split["subject_id"].to_list())))
    ev = pl.read_parquet(sorted(cohort.glob("data/*/*.parquet")))
    days = max(1.0, float((ev["time"].max() - ev["time"].min()).total_seconds()) / 86400.0)
    n = split.height * round(days)
    counts = dict(b.group_by("label").len().iter_rows())
    counts.update(b.group_by("kind").len().iter_rows())
    return {k: counts[k] / n for k in sorted(counts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cohort")
    ap.add_argument("--split", action="append", help="train (default), tuning, held_out; repeat for several")
    ap.add_argument("--horizon", type=float, default=6.0)
    a = ap.parse_args(argv)
    splits = tuple(a.split or ["train"])
    shares = window_shares(a.cohort, splits, a.horizon)
    per_day = event_counts(a.cohort, splits)
    print(f"{int(shares.pop('windows'))} windows ({', '.join(splits)}), horizon {a.horizon:g} h")
    print("| decision | per subject-day | share of windows |\n|---|---:|---:|")
    for k in sorted(shares):
        print(f"| {k} | {per_day.get(k, float('nan')):.2f} | {100 * shares[k]:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

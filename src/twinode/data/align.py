"""Absolute or relative event times -> float hours from each subject's window start.

The window opens at the FeatureSpec's ``window_start`` event (the first one per subject),
or at the subject's earliest timed event when the spec names none. Rows the window cannot
use are dropped and counted by reason, never silently: measurements and interventions
before the start (``before_window``) or after ``window_hours`` (``after_window``) or
without a time (``null_time``), statics after the start (``static_after_start``), and
every row of a subject that has no start event (``no_window_start``). Outcomes are kept
whatever their time: they are labels, not inputs.
"""

from __future__ import annotations

from collections import Counter

import polars as pl

from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import map_codes

_US_PER_HOUR = 3_600_000_000.0


def align(events: pl.DataFrame, spec: FeatureSpec, dropped: Counter, *, window_hours: float | None = None,
          start=None) -> pl.DataFrame:
    """Return ``events`` with ``time`` as float64 hours from the window start, filtered to the window.

    ``window_hours`` (default: the spec's) is the window's length; ``start`` (a timestamp for
    absolute times, hours for relative ones) overrides the window start of every subject
    (an inference ``--time-origin``)."""
    absolute = isinstance(events.schema["time"], pl.Datetime)
    window_hours = spec.window_hours if window_hours is None else float(window_hours)
    if start is None:
        start = _window_starts(events, spec, absolute)
    else:
        start = events.select("subject_id").unique().with_columns(
            pl.lit(start).cast(pl.Datetime("us") if absolute else pl.Float64).alias("_start"))
    ev = events.join(start, on="subject_id", how="left", maintain_order="left")
    n = ev["_start"].null_count()
    if n:
        dropped["no_window_start"] += n
        ev = ev.filter(pl.col("_start").is_not_null())
    if absolute:
        hours = (pl.col("time") - pl.col("_start")).dt.total_microseconds().cast(pl.Float64) / _US_PER_HOUR
    else:
        hours = pl.col("time") - pl.col("_start")
    ev = _pair_infusions(ev.with_columns(hours.alias("time")).drop("_start"), spec)

    roles = map_codes(ev["code"].unique().drop_nulls().to_list(), spec).select("code", pl.col("role").alias("_role"))
    ev = ev.join(roles, on="code", how="left", maintain_order="left")
    t, role = pl.col("time"), pl.col("_role")
    series = role.is_in(["measurement", "intervention"])
    reasons = {
        "null_time": series & t.is_null(),
        "before_window": series & (t < 0),
        "after_window": series & (t > window_hours),
        "static_after_start": (role == "static") & (t > 0),
    }
    flags = ev.select(**{k: v.fill_null(False) for k, v in reasons.items()})
    keep = pl.Series([True] * ev.height) if ev.height else pl.Series([], dtype=pl.Boolean)
    for name in reasons:
        hit = flags[name] & keep
        if hit.any():
            dropped[name] += int(hit.sum())
        keep = keep & ~flags[name]
    return ev.filter(keep).drop("_role")


def _window_starts(events: pl.DataFrame, spec: FeatureSpec, absolute: bool) -> pl.DataFrame:
    """``subject_id -> _start``; relative times without a start event start at 0."""
    ws = spec.window_start
    timed = events.filter(pl.col("time").is_not_null())
    if ws is not None:
        codes = [c for c in timed["code"].unique().drop_nulls().to_list() if ws.matches(c)]
        timed = timed.filter(pl.col("code").is_in(codes))
    elif not absolute:
        return events.select("subject_id").unique().with_columns(pl.lit(0.0).alias("_start"))
    return timed.group_by("subject_id").agg(pl.col("time").min().alias("_start"))


def _pair_infusions(ev: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """``duration_h`` for infusion starts from the next ``end_code`` event of the same subject."""
    paired = [f for f in spec.interventions if f.end_code]
    if not paired:
        return ev
    if "duration_h" not in ev.columns:
        ev = ev.with_columns(pl.lit(None, pl.Float64).alias("duration_h"))
    ev = ev.with_row_index("_i")
    codes = ev["code"].unique().drop_nulls().to_list()
    for f in paired:
        mine = [c for c in codes if spec.resolve(c) is f]
        starts = ev.filter(pl.col("code").is_in(mine) & pl.col("time").is_not_null())
        ends = ev.filter((pl.col("code") == f.end_code) & pl.col("time").is_not_null()).select(
            "subject_id", pl.col("time").alias("_end"), pl.col("time").alias("_t"))
        if not starts.height:
            continue
        got = starts.sort("time").join_asof(ends.sort("_t"), left_on="time", right_on="_t", by="subject_id", check_sortedness=False, allow_exact_matches=False,
                                            strategy="forward").select("_i", (pl.col("_end") - pl.col("time")).alias("_d"))
        # Unmatched starts keep a null duration: rules.finish_doses decides (and counts) them.
        ev = ev.join(got, on="_i", how="left", maintain_order="left").with_columns(
            pl.coalesce("_d", "duration_h").alias("duration_h")).drop("_d")
    return ev.drop("_i")

"""Read one subject's raw events into the twin's inputs, through the training pipeline itself.

A history (a MEDS folder, a long CSV/parquet with timestamps or hours) goes through the same
functions training uses: ``read_events`` -> ``check_events`` (exact duplicates, non-finite
values) -> ``align`` (window start, window length) -> ``tensorize`` (code matching, ranges,
same-time duplicates, dose rules of :mod:`twinode.data.rules`), with ``transform=False`` so
measurements stay in original units (the twin applies its transforms). So a subject's
inference tensors are its training tensors, which the parity tests pin.

What differs from training is only what a single history needs: one subject (``subject``),
an optional time origin, strictness about unknown codes in hand-written files, and a check
that the times are hours.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from twinode.data.align import align
from twinode.data.readers import RawEvents, read_events
from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import SubjectRecord, tensorize
from twinode.data.validate import ValidationReport, check_events
from twinode.errors import DataError

# A history spanning more than this many training windows has times in minutes or seconds.
SPAN_ERROR_WINDOWS = 50.0


@dataclass
class SubjectEvents:
    subject_id: int
    record: SubjectRecord  # original units; open rate infusions closed at ``window_hours``
    events: pl.DataFrame  # the aligned rows tensorize read (to close open infusions elsewhere)
    spec: FeatureSpec
    window_hours: float
    dropped: Counter = field(default_factory=Counter)  # reason -> rows (or notes such as infusion_without_end)
    skipped: dict[str, int] = field(default_factory=dict)  # code -> rows with no role in the twin
    warnings: list[str] = field(default_factory=list)

    def doses_until(self, until_h: float) -> np.ndarray:
        """Dose rows with open rate infusions running to ``max(window_hours, until_h)``."""
        until = max(self.window_hours, float(until_h))
        if until == self.window_hours or not len(self.record.doses):
            return self.record.doses
        records, _ = tensorize(self.events, self.spec, transform=False, until_h=until)
        return records[0].doses


def parse_time_origin(raw, absolute: bool, option: str = "--time-origin"):
    """``--time-origin``: an ISO timestamp for timestamped events, hours for relative ones."""
    if raw is None:
        return None
    if absolute:
        if isinstance(raw, datetime):
            return raw
        try:
            return datetime.fromisoformat(str(raw))
        except ValueError:
            raise DataError(f"{option} {raw!r} is not an ISO timestamp (e.g. 2180-07-23T17:00)",
                            hint="the events carry timestamps, so the origin must be one too") from None
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{option} {raw!r} is not a number of hours", hint="the events carry hours, so the origin must too") from None


def _one_subject(raw: RawEvents, subject: int | None, source: str, command: str) -> pl.DataFrame:
    ev = raw.events
    ids = sorted(ev["subject_id"].unique().to_list())
    if subject is not None:
        ev = ev.filter(pl.col("subject_id") == int(subject))
        if not ev.height:
            raise DataError(f"subject {subject} is not in the events; found {len(ids)} subjects, e.g. {ids[:10]}", file=source,
                            hint=f"pass {command} --subject with one of them")
        return ev
    if len(ids) != 1:
        raise DataError(f"history must hold one subject, found {len(ids)}: {ids[:10]}", file=source,
                        hint=f"pick one with {command} --subject ID")
    return ev


def _check_codes(ev: pl.DataFrame, spec: FeatureSpec, skip_unknown: bool, source: str,
                 command: str) -> tuple[pl.DataFrame, dict[str, int]]:
    """Rows whose code no feature claims: an error, or skipped and counted (window-start and infusion-end
    codes are known: align reads them)."""
    codes = ev["code"].unique().to_list()
    ws = spec.window_start
    unknown = [c for c in codes if spec.resolve(c) is None]
    # Outcome rows are labels, not inputs: counted as skipped (they stay, as in training).
    outcome = [c for c in codes if (f := spec.resolve(c)) is not None and f.role == "outcome"]
    ends = {f.end_code for f in spec.interventions if f.end_code}
    bad = [c for c in unknown if not (ws is not None and ws.matches(c)) and c not in ends]
    if bad and not skip_unknown:
        row = ev.filter(pl.col("code").is_in(bad)).row(0, named=True)
        known = [f.name for f in spec.features if f.role != "outcome"]
        raise DataError(f"unknown code {row['code']!r}; this twin knows {known}", file=row.get("_file", source),
                        subject=row["subject_id"], code=row["code"], row=row.get("_row"),
                        hint=f"pass {command} --skip-unknown-codes to skip (and count) such rows")
    # Window-start and end rows stay: align needs them (tensorize then counts them as unmapped_code, as in training).
    counts = ev.filter(pl.col("code").is_in(bad + outcome)).group_by("code").len()
    return ev.filter(~pl.col("code").is_in(bad)), dict(zip(counts["code"].to_list(), counts["len"].to_list()))


def _check_span(ev: pl.DataFrame, window_hours: float, source: str) -> None:
    """Hours since the window start, checked: a span far beyond the window means minutes or seconds."""
    t = ev["time"].drop_nulls()
    if not len(t):
        return
    span = float(t.max() - t.min())
    if span > SPAN_ERROR_WINDOWS * window_hours:
        raise DataError(f"the history spans {span:g} h, {span / window_hours:.0f} times the twin's {window_hours:g}-h window; "
                        "its times look like minutes or seconds", file=source,
                        hint="give time as hours since the window start (divide minutes by 60, seconds by 3600)")


@dataclass
class AlignedSubject:
    subject_id: int
    events: pl.DataFrame  # the subject's rows, time in hours since its window start, within the window
    window_hours: float
    source: str
    dropped: Counter
    skipped: dict[str, int]
    warnings: list[str]


def align_subject(source: str | Path | RawEvents, spec: FeatureSpec, *, subject: int | None = None, time_origin=None,
                  window_hours: float | None = None, skip_unknown: bool | None = None,
                  command: str = "twinode-predict") -> AlignedSubject:
    """One subject's events checked and aligned by the training steps (``check_events``, ``align``).

    ``time_origin`` replaces the window start (default: the spec's ``window_start`` event for
    timestamps, else the earliest event; 0 h for hour-valued files). ``window_hours``
    (default: the spec's) is how far after the start events are read. ``skip_unknown``
    (default: on for timestamped MEDS data, off for hour-valued files) skips and counts codes
    the twin does not know instead of refusing them."""
    raw = source if isinstance(source, RawEvents) else read_events(source)
    name = ", ".join(raw.files) if raw.files else "<events>"
    absolute = raw.time_is_absolute
    ev = _one_subject(raw, subject, name, command)
    report = ValidationReport(files=raw.files)
    ev = check_events(RawEvents(ev, raw.files, raw.splits, raw.metadata), report)
    ev, skipped = _check_codes(ev, spec, absolute if skip_unknown is None else skip_unknown, name, command)
    window = spec.window_hours if window_hours is None else float(window_hours)
    origin = parse_time_origin(time_origin, absolute)
    if origin is None and not absolute:
        origin = 0.0  # hour-valued histories are on the window's clock already
    if not absolute:
        _check_span(ev.filter(pl.col("time") >= origin), spec.window_hours, name)
    aligned = align(ev, spec, report.dropped, window_hours=window, start=origin)
    if absolute:
        _check_span(aligned, spec.window_hours, name)
    sid = int(ev["subject_id"][0])
    warnings = []
    if report.dropped.get("after_window"):
        warnings.append(f"{report.dropped['after_window']} events later than the twin's {window:g}-h window were not read; "
                        f"pass {command} --window-hours H to read further")
    if not aligned.height:
        raise DataError(f"no event of subject {sid} falls in the window (dropped: {dict(report.dropped)})", file=name,
                        hint=f"check {command} --time-origin, or the spec's window_start code in the events")
    return AlignedSubject(sid, aligned, window, name, report.dropped, skipped, warnings)


def read_subject(source: str | Path | RawEvents, spec: FeatureSpec, **options) -> SubjectEvents:
    """One subject's events -> :class:`SubjectEvents` (original units), by the training rules;
    ``options`` as for :func:`align_subject`."""
    a = align_subject(source, spec, **options)
    records, trep = tensorize(a.events, spec, source=a.source, transform=False, until_h=a.window_hours)
    a.dropped.update(trep.dropped)
    return SubjectEvents(a.subject_id, records[0], a.events, spec, a.window_hours, a.dropped, a.skipped, a.warnings)

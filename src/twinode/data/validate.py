"""Schema and content checks on read events, and the report that counts what happened.

Errors that make the data unusable (missing columns, wrong types, null codes or subject
ids, unparseable, non-finite or negative relative times, an empty dataset) raise a
``DataError`` naming file, subject, code and row. Problems the pipeline can absorb are
fixed and reported: unsorted events are sorted, exact duplicate rows and non-finite values
are dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from twinode.data.align import align
from twinode.data.readers import RawEvents, read_events
from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import SubjectRecord, tensorize
from twinode.errors import DataError

_KEY = ["subject_id", "time", "code", "numeric_value"]


@dataclass
class ValidationReport:
    files: list[str]
    subjects: int = 0
    events: int = 0
    time_kind: str = ""  # "timestamp" or "hours"
    dropped: Counter = field(default_factory=Counter)  # reason -> rows
    notes: list[str] = field(default_factory=list)
    codes: pl.DataFrame | None = None  # code, events, subjects, missing_rate (no numeric value)
    spec: str | None = None
    usable_subjects: int | None = None  # subjects with at least one measurement in the window
    feature_missing: dict[str, float] = field(default_factory=dict)  # feature -> share of subjects never observed

    def as_dict(self) -> dict:
        return {"files": self.files, "subjects": self.subjects, "events": self.events, "time_kind": self.time_kind,
                "dropped": dict(self.dropped), "notes": self.notes, "spec": self.spec,
                "usable_subjects": self.usable_subjects, "feature_missing": self.feature_missing,
                "codes": self.codes.to_dicts() if self.codes is not None else []}


def check_events(raw: RawEvents, report: ValidationReport) -> pl.DataFrame:
    """Content checks; returns the events sorted by subject and time, fixable problems removed."""
    ev = raw.events
    if ev.height == 0:
        raise DataError("the dataset is empty: no events", file=raw.files[0] if raw.files else None,
                        hint="check that the shards hold rows, or the path")
    report.events = ev.height
    report.time_kind = "timestamp" if isinstance(ev.schema["time"], pl.Datetime) else "hours"
    _no_nulls(ev, "subject_id")
    _no_nulls(ev, "code")
    if report.time_kind == "hours":
        t = pl.col("time")
        _first_or_none(ev, ~t.is_finite() & t.is_not_null(), "non-finite time {v}",
                       "times must be finite hours since the start")
        _first_or_none(ev, t < 0, "negative time {v} h", "relative times are hours since the start and must be >= 0; "
                       "shift them, or give absolute timestamps")
    bad_value = pl.col("numeric_value").is_not_null() & ~pl.col("numeric_value").is_finite()
    n = ev.filter(bad_value).height
    if n:
        report.dropped["non_finite_value"] += n
        report.notes.append(f"{n} rows with NaN or inf numeric_value dropped (first at "
                            f"{_where(ev.filter(bad_value).row(0, named=True))})")
        ev = ev.filter(~bad_value)
    for f in raw.files:
        part = ev.filter(pl.col("_file") == f).select("subject_id", "time")
        if not part.equals(part.sort(["subject_id", "time"], maintain_order=True, nulls_last=False)):
            report.notes.append(f"events in {f} were not sorted by subject and time; sorted")
    ev = ev.sort(["subject_id", "time"], maintain_order=True, nulls_last=False)
    key = [c for c in _KEY + ["duration_h"] if c in ev.columns]
    dup = ev.select(~pl.struct(key).is_first_distinct()).to_series()
    if dup.any():
        report.dropped["duplicate_row"] += int(dup.sum())
        report.notes.append(f"{int(dup.sum())} exact duplicate rows dropped (first at {_where(ev.filter(dup).row(0, named=True))})")
        ev = ev.filter(~dup)
    report.subjects = ev["subject_id"].n_unique()
    report.codes = (ev.group_by("code").agg(pl.len().alias("events"), pl.col("subject_id").n_unique().alias("subjects"),
                                            pl.col("numeric_value").is_null().mean().alias("missing_rate"))
                    .sort("events", descending=True))
    return ev


def _where(row: dict) -> str:
    return f"file={row.get('_file')}, subject={row['subject_id']}, code={row['code']}, row={row.get('_row')}"


def _no_nulls(ev: pl.DataFrame, col: str) -> None:
    if ev[col].null_count():
        row = ev.filter(pl.col(col).is_null()).row(0, named=True)
        raise DataError(f"null {col} in an event row", file=row["_file"], subject=row["subject_id"], code=row["code"],
                        row=row["_row"], hint=f"every event needs a {col}; remove or fill these rows")


def _first_or_none(ev: pl.DataFrame, cond: pl.Expr, message: str, hint: str) -> None:
    bad = ev.filter(cond.fill_null(False))
    if bad.height:
        row = bad.row(0, named=True)
        raise DataError(message.format(v=row["time"]), file=row["_file"], subject=row["subject_id"], code=row["code"],
                        row=row["_row"], hint=hint)


@dataclass
class CheckedData:
    events: pl.DataFrame  # aligned float-hour events when a spec was given
    splits: dict[int, str]
    report: ValidationReport
    raw: RawEvents


def load_checked(path: str | Path, spec: FeatureSpec | None = None) -> CheckedData:
    """read -> check -> (with a spec) align to windows. Raises DataError on unusable input."""
    raw = read_events(path)
    report = ValidationReport(files=raw.files, spec=spec.name if spec else None)
    ev = check_events(raw, report)
    if spec is not None:
        ev = align(ev, spec, report.dropped)
    return CheckedData(ev, raw.splits, report, raw)


def validate(path: str | Path, spec: FeatureSpec | None = None) -> tuple[ValidationReport, list[SubjectRecord] | None]:
    """Full check of a dataset; with a spec, tensorizes too so every drop reason is counted."""
    checked = load_checked(path, spec)
    report = checked.report
    if spec is None:
        return report, None
    if checked.events.height == 0:
        raise DataError(f"no event falls in any window of spec '{spec.name}'", file=str(path),
                        hint=f"dropped: {dict(report.dropped)}; check window_start and window_hours")
    records, trep = tensorize(checked.events, spec, source=str(path))
    report.dropped.update(trep.dropped)
    report.usable_subjects = sum(1 for r in records if len(r.times))
    if records:
        seen = np.stack([r.mask.any(0) for r in records]) if records else np.zeros((0, 0))
        report.feature_missing = {f.name: round(float(1 - seen[:, i].mean()), 4) for i, f in enumerate(spec.measurements)}
    if not report.usable_subjects:
        raise DataError(f"no subject has a measurement of spec '{spec.name}' in its window", file=str(path),
                        hint="check the codes and window_start of the spec")
    return report, records

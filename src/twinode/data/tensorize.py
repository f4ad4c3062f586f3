"""Events -> per-subject packed arrays, and the normalisation fitted on the train split.

Each subject keeps its own time points (no union across subjects). Measurements are
transformed (e.g. log1p) here for training (``transform=False`` keeps original units, as the
inference readers need); normalisation is applied later with statistics fitted on the train
split only, and travels with the exported model. The event rules (ranges, duplicates, doses)
are those of :mod:`twinode.data.rules`, shared with every inference path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from twinode.data.rules import finish_doses
from twinode.data.schema import FeatureSpec
from twinode.errors import DataError


@dataclass
class SubjectRecord:
    subject_id: int
    times: np.ndarray  # [N] float32 hours from window start, strictly increasing
    values: np.ndarray  # [N, D] float32, transformed units, 0 where missing
    mask: np.ndarray  # [N, D] float32, 1 observed
    doses: np.ndarray  # [M, 4] float32 (time_h, channel, amount, duration_h)
    static: np.ndarray  # [S] float32, NaN = unknown
    outcome: float = float("nan")


@dataclass
class TensorizeReport:
    subjects: int = 0
    events: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> rows

    def as_dict(self) -> dict:
        return {"subjects": self.subjects, "events": self.events, "dropped": dict(self.dropped)}


def _transform(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    return values


def map_codes(codes: list[str], spec: FeatureSpec) -> pl.DataFrame:
    """``code -> feature, role, channel`` (channel = index within the role) for each distinct code."""
    index = {f.name: i for role in ("measurement", "intervention", "static", "outcome") for i, f in enumerate(spec.by_role(role))}
    feats = [spec.resolve(c) if c is not None else None for c in codes]
    return pl.DataFrame(
        {"code": codes, "feature": [f.name if f else None for f in feats], "role": [f.role if f else None for f in feats],
         "channel": [index[f.name] if f else None for f in feats]},
        schema={"code": pl.String, "feature": pl.String, "role": pl.String, "channel": pl.Int32},
    )


def _bounds(ids: np.ndarray, subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.searchsorted(ids, subjects, "left"), np.searchsorted(ids, subjects, "right")


def tensorize(events: pl.DataFrame, spec: FeatureSpec, source: str = "<events>", *, transform: bool = True,
              until_h: float | None = None) -> tuple[list[SubjectRecord], TensorizeReport]:
    """Group long events into one SubjectRecord per subject (vectorised over all subjects).

    ``events`` needs ``subject_id, time (float hours), code, numeric_value``. Codes with no
    role are counted as ``unmapped_code``; out-of-range values are dropped and counted or
    rejected, as the feature says; rows with no value are counted as ``missing_value``.
    ``transform=False`` keeps measurements in original units; ``until_h`` (default: the
    spec's ``window_hours``) is where open rate infusions end.
    """
    missing = [c for c in ("subject_id", "time", "code", "numeric_value") if c not in events.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; got {events.columns}", file=source)
    report = TensorizeReport(events=events.height)
    if events.height == 0:
        raise DataError("the cohort is empty: no events", file=source, hint="check the path and the split filter")

    mapping = map_codes(events["code"].unique().drop_nulls().to_list(), spec)
    ev = events.join(mapping, on="code", how="left")
    unmapped = ev["role"].null_count()
    if unmapped:
        report.dropped["unmapped_code"] += unmapped
    ev = ev.filter(pl.col("role").is_not_null())
    ev = _apply_ranges(ev, spec, report, source)
    ev = ev.sort(["subject_id", "time"], maintain_order=True, nulls_last=False)
    subjects = ev["subject_id"].unique(maintain_order=True).to_numpy()

    times, values, mask, meas_b = _measurements(ev, spec, report, subjects, transform)
    doses, dose_b = _doses(ev, spec, report, subjects, spec.window_hours if until_h is None else until_h, source)
    static = _statics(ev, spec, report, subjects)
    outcome = _outcomes(ev, subjects)

    records = [
        SubjectRecord(int(sid), times[meas_b[0][i]:meas_b[1][i]], values[meas_b[0][i]:meas_b[1][i]],
                      mask[meas_b[0][i]:meas_b[1][i]], doses[dose_b[0][i]:dose_b[1][i]], static[i], float(outcome[i]))
        for i, sid in enumerate(subjects)
    ]
    report.subjects = len(records)
    if not records:
        raise DataError("no subject has any usable event after mapping codes to roles", file=source,
                        hint=f"spec '{spec.name}' knows codes like {[f.code for f in spec.features[:5]]}")
    return records, report


def _apply_ranges(ev: pl.DataFrame, spec: FeatureSpec, report: TensorizeReport, source: str) -> pl.DataFrame:
    ranged = [f for f in spec.features if f.valid_range is not None]
    if not ranged:
        return ev
    bounds = pl.DataFrame({"feature": [f.name for f in ranged], "_lo": [f.valid_range[0] for f in ranged],
                           "_hi": [f.valid_range[1] for f in ranged]})
    ev = ev.join(bounds, on="feature", how="left", maintain_order="left")
    # NaN sorts above every number in polars; it is a missing value, not an out-of-range one.
    bad = (((pl.col("numeric_value") < pl.col("_lo")) | (pl.col("numeric_value") > pl.col("_hi")))
           & ~pl.col("numeric_value").is_nan()).fill_null(False)
    flagged = ev.filter(bad)
    for f in ranged:
        hit = flagged.filter(pl.col("feature") == f.name)
        if not hit.height:
            continue
        if f.out_of_range == "reject":
            row = hit.row(0, named=True)
            raise DataError(f"value {row['numeric_value']} outside valid_range {list(f.valid_range)}",
                            file=row.get("_file", source), subject=row["subject_id"], code=row["code"], row=row.get("_row"),
                            hint="fix the value, widen valid_range, or set out_of_range: drop")
        report.dropped[f"out_of_range:{f.name}"] += hit.height
    return ev.filter(~bad).drop("_lo", "_hi")


def _drop_unusable(rows: pl.DataFrame, report: TensorizeReport) -> pl.DataFrame:
    no_value = pl.col("numeric_value").is_null() | pl.col("numeric_value").is_nan()
    n = rows.filter(no_value).height
    if n:
        report.dropped["missing_value"] += n
    rows = rows.filter(~no_value)
    n = rows["time"].null_count()
    if n:
        report.dropped["null_time"] += n
    return rows.filter(pl.col("time").is_not_null())


def _combine_same_time(ch: np.ndarray, v: np.ndarray, start: np.ndarray, policies: list[str]) -> np.ndarray:
    """One value per run of rows with the same (subject, time, channel), by the channel's policy."""
    idx = np.flatnonzero(start)
    counts = np.diff(np.append(idx, len(v)))
    out = v[idx].copy()  # "first", and every single-row run
    pol = np.array(policies, dtype=object)[ch[idx]]
    for policy, values in (("mean", lambda: np.add.reduceat(v, idx) / counts), ("last", lambda: v[idx + counts - 1]),
                           ("max", lambda: np.maximum.reduceat(v, idx)), ("min", lambda: np.minimum.reduceat(v, idx))):
        sel = pol == policy
        if sel.any():
            out[sel] = values()[sel]
    return out


def _measurements(ev, spec, report, subjects, transform: bool = True):
    feats = spec.measurements
    D = len(feats)
    # Stable sort: rows at the same time keep their input order, which "first"/"last" rely on.
    m = _drop_unusable(ev.filter(pl.col("role") == "measurement"), report).sort(
        ["subject_id", "time", "channel"], maintain_order=True)
    if not m.height:
        return np.zeros(0, np.float32), np.zeros((0, D), np.float32), np.zeros((0, D), np.float32), _bounds(np.zeros(0), subjects)
    sid, t = m["subject_id"].to_numpy(), m["time"].to_numpy()
    ch, v = m["channel"].to_numpy().astype(np.int64), m["numeric_value"].to_numpy().astype(np.float64)
    same_time = np.zeros(len(sid), bool)
    same_time[1:] = (sid[1:] == sid[:-1]) & (t[1:] == t[:-1])
    run = ~(same_time & np.append(False, ch[1:] == ch[:-1]))
    v = _combine_same_time(ch, v, run, [f.duplicates for f in feats])
    dups = np.bincount(ch, minlength=D) - np.bincount(ch[run], minlength=D)
    for c in np.flatnonzero(dups):
        report.dropped[f"duplicate_combined:{feats[c].name}"] += int(dups[c])
    sid, t, ch, same_time = sid[run], t[run], ch[run], same_time[run]
    for c, f in enumerate(feats):
        if transform and f.transform != "identity":
            sel = ch == c
            v[sel] = _transform(v[sel], f.transform)
    new = ~same_time
    row = np.cumsum(new) - 1
    values = np.zeros((int(new.sum()), D), np.float32)
    mask = np.zeros_like(values)
    values[row, ch] = v
    mask[row, ch] = 1.0
    return t[new].astype(np.float32), values, mask, _bounds(sid[new], subjects)


def _doses(ev, spec, report, subjects, until_h: float, source: str = "<events>"):
    d = _drop_unusable(ev.filter(pl.col("role") == "intervention"), report)
    neg = d.filter(pl.col("numeric_value") < 0)
    if neg.height:
        row = neg.row(0, named=True)
        raise DataError(f"a dose amount must be >= 0, got {row['numeric_value']}", file=row.get("_file", source),
                        subject=row["subject_id"], code=row["code"], row=row.get("_row"), hint="remove the row or correct its sign")
    # Durations come from an optional column or a paired end event; NaN = none given (see rules.finish_doses).
    dur = (d["duration_h"].cast(pl.Float64).fill_null(float("nan")).to_numpy() if "duration_h" in d.columns
           else np.full(d.height, np.nan))
    doses = finish_doses(d["subject_id"].to_numpy(), d["time"].to_numpy(), d["channel"].to_numpy(),
                         d["numeric_value"].to_numpy(), dur, spec.interventions, until_h, report.dropped)
    return doses, _bounds(d["subject_id"].to_numpy(), subjects)


def _statics(ev, spec, report, subjects):
    static = np.full((len(subjects), len(spec.statics)), np.nan, np.float32)
    s = ev.filter(pl.col("role") == "static")
    n = s["numeric_value"].null_count()
    if n:
        report.dropped["missing_value"] += n
    # Rows are in time order: the latest value at or before the window start wins.
    last = s.drop_nulls("numeric_value").group_by(["subject_id", "channel"], maintain_order=True).agg(pl.col("numeric_value").last())
    if last.height:
        static[np.searchsorted(subjects, last["subject_id"].to_numpy()), last["channel"].to_numpy()] = last["numeric_value"].to_numpy()
    return static


def _outcomes(ev, subjects):
    out = np.full(len(subjects), np.nan)
    o = ev.filter((pl.col("role") == "outcome") & pl.col("numeric_value").is_not_null())
    last = o.group_by("subject_id", maintain_order=True).agg(pl.col("numeric_value").last())
    if last.height:
        out[np.searchsorted(subjects, last["subject_id"].to_numpy())] = last["numeric_value"].to_numpy()
    return out


@dataclass
class Normaliser:
    """Per-channel statistics, fitted on training subjects only."""

    meas_mean: np.ndarray
    meas_std: np.ndarray
    static_mean: np.ndarray
    static_std: np.ndarray
    dose_scale: np.ndarray

    @classmethod
    def fit(cls, records: list[SubjectRecord], n_interventions: int) -> "Normaliser":
        if not records:
            raise DataError("cannot fit normalisation: the train split is empty", hint="check subject_splits")
        vals = np.concatenate([r.values for r in records])
        mask = np.concatenate([r.mask for r in records])
        cnt = mask.sum(0)
        mean = (vals * mask).sum(0) / np.maximum(cnt, 1)
        var = (((vals - mean) * mask) ** 2).sum(0) / np.maximum(cnt - 1, 1)
        std = np.sqrt(var)
        std = np.where(std > 1e-6, std, 1.0)
        st = np.stack([r.static for r in records]) if records[0].static.size else np.zeros((len(records), 0))
        s_mean = np.nanmean(st, 0) if st.size else np.zeros(0)
        s_std = np.nanstd(st, 0) if st.size else np.zeros(0)
        s_mean = np.nan_to_num(s_mean)
        s_std = np.where(np.nan_to_num(s_std) > 1e-6, np.nan_to_num(s_std), 1.0)
        scale = np.ones(n_interventions)
        doses = np.concatenate([r.doses for r in records]) if records else np.zeros((0, 4))
        for c in range(n_interventions):
            amt = doses[doses[:, 1] == c, 2]
            amt = amt[amt > 0]
            if amt.size:
                scale[c] = float(np.mean(amt))
        f32 = lambda a: np.asarray(a, np.float32)
        return cls(f32(mean), f32(std), f32(s_mean), f32(s_std), f32(scale))

    def apply(self, r: SubjectRecord) -> SubjectRecord:
        values = ((r.values - self.meas_mean) / self.meas_std * r.mask).astype(np.float32)
        static = ((r.static - self.static_mean) / self.static_std).astype(np.float32)
        doses = r.doses.copy()
        if doses.size:
            doses[:, 2] = doses[:, 2] / self.dose_scale[doses[:, 1].astype(int)]
        return SubjectRecord(r.subject_id, r.times, values, r.mask, doses, static, r.outcome)

    def as_dict(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("meas_mean", "meas_std", "static_mean", "static_std", "dose_scale")}

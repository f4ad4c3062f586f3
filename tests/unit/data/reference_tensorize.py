"""The first, per-subject group_by tensorize: the reference the vectorised one must match."""

from __future__ import annotations

import numpy as np
import polars as pl

from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import SubjectRecord, TensorizeReport
from twinode.errors import DataError


def _transform(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    return values


def reference_tensorize(events: pl.DataFrame, spec: FeatureSpec, source: str = "<events>") -> tuple[list[SubjectRecord], TensorizeReport]:
    """Group long events into one SubjectRecord per subject.

    ``events`` needs ``subject_id, time (float hours), code, numeric_value``. Codes with no
    role are counted as ``unmapped_code``; out-of-range values are dropped and counted or
    rejected, as the feature says.
    """
    missing = [c for c in ("subject_id", "time", "code", "numeric_value") if c not in events.columns]
    if missing:
        raise DataError(f"missing required column(s) {missing}; got {events.columns}", file=source)
    report = TensorizeReport(events=events.height)
    if events.height == 0:
        raise DataError("the cohort is empty: no events", file=source, hint="check the path and the split filter")

    codes = events["code"].unique().to_list()
    feature_of = {c: spec.resolve(c) for c in codes if c is not None}
    meas = [f.name for f in spec.measurements]
    interv = [f.name for f in spec.interventions]
    stat = [f.name for f in spec.statics]
    outc = [f.name for f in spec.outcomes]
    role_index = {**{n: i for i, n in enumerate(meas)}, **{n: i for i, n in enumerate(interv)}, **{n: i for i, n in enumerate(stat)}}

    mapping = pl.DataFrame(
        {
            "code": list(feature_of),
            "feature": [f.name if f else None for f in feature_of.values()],
            "role": [f.role if f else None for f in feature_of.values()],
        },
        schema={"code": pl.String, "feature": pl.String, "role": pl.String},
    )
    ev = events.join(mapping, on="code", how="left")
    unmapped = ev.filter(pl.col("role").is_null()).height
    if unmapped:
        report.dropped["unmapped_code"] += unmapped
    ev = ev.filter(pl.col("role").is_not_null())

    # Range checks, per feature.
    for f in spec.features:
        if f.valid_range is None:
            continue
        lo, hi = f.valid_range
        bad = ev.filter((pl.col("feature") == f.name) & ((pl.col("numeric_value") < lo) | (pl.col("numeric_value") > hi)))
        if bad.height:
            if f.out_of_range == "reject":
                row = bad.row(0, named=True)
                raise DataError(
                    f"value {row['numeric_value']} outside valid_range {list(f.valid_range)}",
                    file=source, subject=row["subject_id"], code=row["code"],
                    hint="fix the value, widen valid_range, or set out_of_range: drop",
                )
            report.dropped[f"out_of_range:{f.name}"] += bad.height
            ev = ev.join(bad.select("subject_id", "time", "code", "numeric_value"), on=["subject_id", "time", "code", "numeric_value"], how="anti")

    records: list[SubjectRecord] = []
    dup_policy = {f.name: f.duplicates for f in spec.measurements}
    transform = {f.name: f.transform for f in spec.measurements}
    D, S = len(meas), len(stat)
    for (sid,), g in ev.sort(["subject_id", "time"]).group_by(["subject_id"], maintain_order=True):
        m = g.filter(pl.col("role") == "measurement")
        nan_meas = m.filter(pl.col("numeric_value").is_null() | pl.col("numeric_value").is_nan()).height
        if nan_meas:
            report.dropped["missing_value"] += nan_meas
            m = m.filter(pl.col("numeric_value").is_not_null() & pl.col("numeric_value").is_not_nan())
        times = np.unique(m["time"].to_numpy()).astype(np.float64)
        values = np.zeros((len(times), D), np.float32)
        mask = np.zeros((len(times), D), np.float32)
        if len(times):
            ti = np.searchsorted(times, m["time"].to_numpy())
            for name, sub in m.with_columns(pl.Series("ti", ti)).group_by("feature"):
                ch = role_index[name[0]]
                agg = {"mean": pl.col("numeric_value").mean(), "last": pl.col("numeric_value").last(),
                       "first": pl.col("numeric_value").first(), "max": pl.col("numeric_value").max(),
                       "min": pl.col("numeric_value").min()}[dup_policy[name[0]]]
                per_time = sub.group_by("ti").agg(agg)
                dups = sub.height - per_time.height
                if dups:
                    report.dropped[f"duplicate_combined:{name[0]}"] += dups
                idx = per_time["ti"].to_numpy()
                values[idx, ch] = _transform(per_time["numeric_value"].to_numpy().astype(np.float64), transform[name[0]])
                mask[idx, ch] = 1.0

        d = g.filter(pl.col("role") == "intervention")
        kinds = {f.name: f.kind for f in spec.interventions}
        doses = np.zeros((d.height, 4), np.float32)
        if d.height:
            doses[:, 0] = d["time"].to_numpy()
            doses[:, 1] = [role_index[n] for n in d["feature"].to_list()]
            doses[:, 2] = d["numeric_value"].to_numpy()
            # Infusions carry their duration in an optional column; boluses have duration 0.
            if "duration_h" in d.columns:
                dur = d["duration_h"].fill_null(0.0).to_numpy()
                doses[:, 3] = np.where([kinds[n] == "infusion" for n in d["feature"].to_list()], dur, 0.0)

        static = np.full(S, np.nan, np.float32)
        s = g.filter(pl.col("role") == "static")
        for name, val in zip(s["feature"].to_list(), s["numeric_value"].to_list()):
            static[role_index[name]] = val  # sorted by time: the latest value at or before start wins
        outcome = float("nan")
        o = g.filter(pl.col("role") == "outcome")
        if o.height and outc:
            outcome = float(o["numeric_value"][-1])
        records.append(SubjectRecord(int(sid), times.astype(np.float32), values, mask, doses, static, outcome))
    report.subjects = len(records)
    if not records:
        raise DataError("no subject has any usable event after mapping codes to roles", file=source,
                        hint=f"spec '{spec.name}' knows codes like {[f.code for f in spec.features[:5]]}")
    return records, report

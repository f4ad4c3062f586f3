"""The event rules: how one event becomes part of the twin's inputs, wherever it is read.

Training (``tensorize``), ``twinode-predict``/``-plan`` (``export/inputs.py``), the stream
and ``OnlineTwin`` (``apps/``) apply these functions; the pyfunc model, which may not import
twinode, applies the same rules from the ``events`` block of ``twinode.json``
(:func:`event_policies`). docs/export.md states them for any other consumer:

* code matching: ``FeatureSpec.resolve`` (an exact code, then a feature's name, then the
  first prefix/regex pattern in feature order);
* ``valid_range``: a value outside is dropped and counted (``out_of_range: drop``) or refused
  (``reject``);
* same time, same measurement: combined by the feature's ``duplicates`` policy (exact
  duplicate rows are dropped first);
* interventions: a negative amount is an error; a bolus is given at its time (a duration on
  a bolus row is ignored and counted); an infusion's value is the ``total`` amount or a
  ``rate`` (``rate_per: h|min``), turned into the contract's total ``rate * duration_h``;
  an infusion without an end or duration runs until the next start on its channel, else
  (rates) to the end of the horizon: the window end in training, the later of the window end
  and the last query time at inference; a total without an end is given at its start;
* statics: the latest value at or before the window start;
* measurement transforms (``log1p``) are applied by the twin: readers give original units.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from twinode.data.schema import RATE_PER, Feature, FeatureSpec
from twinode.errors import DataError

READER_VERSION = 1

RULES = {
    "code_match": "an exact code, then a feature's name, then the first prefix/regex pattern in feature order",
    "valid_range": "outside [low, high]: dropped and counted (out_of_range: drop) or refused (reject)",
    "duplicates": "exact duplicate rows dropped; same time and measurement: combined by the feature's duplicates policy",
    "negative_dose": "error",
    "bolus_duration": "ignored (counted): a bolus is given at its time",
    "infusion_value": "total: amount = value; rate: amount = value * duration_h (* 60 for rate_per: min)",
    "open_infusion": ("no end and no duration: runs until the next start on its channel; else a rate runs to the end "
                      "of the horizon (the window end in training, max(window_hours, last query time) at inference) "
                      "and a total is given at its start"),
    "statics": "the latest value at or before the window start",
    "transform": "applied inside the twin: inputs are in original units",
    "window": "times are hours since the window start; a history file is read up to window_hours after it",
}


def event_policies(spec: FeatureSpec) -> dict:
    """The reader's policies for ``twinode.json``: the full FeatureSpec and the rules above."""
    return {"reader_version": READER_VERSION, "spec": spec.to_dict(), "rules": dict(RULES)}


def spec_from_meta(meta: dict) -> FeatureSpec:
    """The FeatureSpec a twin was trained with, from its metadata.

    Twins exported before the ``events`` block carry names, codes, match kinds, units,
    transforms and kinds only; the other policies then take their defaults."""
    events = meta.get("events")
    if isinstance(events, dict) and isinstance(events.get("spec"), dict):
        return FeatureSpec.from_dict(events["spec"])
    keep = ("name", "code", "match", "unit", "transform", "kind")
    feats = [dict({k: f[k] for k in keep if k in f}, role=role)
             for role, key in (("measurement", "measurements"), ("intervention", "interventions"), ("static", "statics"))
             for f in meta[key]]
    feats += [{"name": n, "role": "outcome"} for n in meta.get("outcomes", [])]
    return FeatureSpec.from_dict({"features": feats}, name=meta.get("dataset", "twin"))


# ---- measurements and statics ----

def combine(values: Sequence[float], policy: str) -> float:
    """Same-time values of one measurement -> one value (the ``duplicates`` policy)."""
    v = np.asarray(values, np.float64)
    return float({"mean": np.mean, "first": lambda a: a[0], "last": lambda a: a[-1], "max": np.max, "min": np.min}[policy](v))


def out_of_range(feature: Feature, value: float) -> bool:
    """True when ``value`` lies outside the feature's ``valid_range`` (NaN is missing, not out of range)."""
    if feature.valid_range is None or value != value:
        return False
    lo, hi = feature.valid_range
    return value < lo or value > hi


def check_range(feature: Feature, value: float, dropped: Counter, **where) -> bool:
    """Apply ``out_of_range`` to one value: False (dropped, counted) or a DataError (reject)."""
    if not out_of_range(feature, value):
        return True
    if feature.out_of_range == "reject":
        raise DataError(f"value {value} outside valid_range {list(feature.valid_range)}", **where,
                        hint="fix the value, widen valid_range, or set out_of_range: drop")
    dropped[f"out_of_range:{feature.name}"] += 1
    return False


# ---- interventions ----

def check_dose_value(value: float, **where) -> None:
    if value < 0:
        raise DataError(f"a dose amount must be >= 0, got {value}", **where, hint="remove the row or correct its sign")


def _next_start(sid: np.ndarray, t: np.ndarray, ch: np.ndarray) -> np.ndarray:
    """Per row, the time of the next strictly later start on the same subject and channel (NaN: none)."""
    n = len(t)
    order = np.lexsort((t, ch, sid))
    s, c, tt = sid[order], ch[order], t[order]
    new_group = np.ones(n, bool)
    new_group[1:] = (s[1:] != s[:-1]) | (c[1:] != c[:-1])
    g = np.cumsum(new_group) - 1
    _, t_rank = np.unique(tt, return_inverse=True)
    key = g.astype(np.int64) * (n + 1) + t_rank.astype(np.int64)
    j = np.searchsorted(key, key, side="right")
    ok = j < n
    ok[ok] = g[j[ok]] == g[ok]
    nxt_sorted = np.full(n, np.nan)
    nxt_sorted[ok] = tt[j[ok]]
    out = np.empty(n)
    out[order] = nxt_sorted
    return out


def finish_doses(sid: np.ndarray, t: np.ndarray, ch: np.ndarray, value: np.ndarray, dur: np.ndarray,
                 feats: Sequence[Feature], until_h: float, dropped: Counter | None = None) -> np.ndarray:
    """Intervention events -> contract rows ``[M, 4] (time_h, channel, total amount, duration_h)``.

    ``dur`` is NaN where an event gives no duration (and no end was paired with it). Rows keep
    their order; ``until_h`` closes open rate infusions that no later start closes."""
    n = len(t)
    out = np.zeros((n, 4), np.float32)
    if n == 0:
        return out
    t, value = np.asarray(t, np.float64), np.asarray(value, np.float64)
    ch = np.asarray(ch, np.int64)
    dur = np.array(dur, np.float64, copy=True)
    infusion = np.array([f.kind == "infusion" for f in feats], bool)[ch]
    rate = np.array([f.value == "rate" for f in feats], bool)[ch]
    per_h = np.array([RATE_PER[f.rate_per] for f in feats])[ch]
    counts: Counter = Counter()
    ignored = ~infusion & np.isfinite(dur) & (dur > 0)
    for c in ch[ignored]:
        counts[f"bolus_duration_ignored:{feats[c].name}"] += 1
    dur[~infusion] = 0.0
    open_ = infusion & ~np.isfinite(dur)
    if open_.any():
        for c in ch[open_]:
            counts[f"infusion_without_end:{feats[c].name}"] += 1
        nxt = _next_start(np.asarray(sid, np.int64), t, ch)
        closed = open_ & np.isfinite(nxt)
        dur[closed] = nxt[closed] - t[closed]
        rest = open_ & ~closed
        dur[rest & rate] = np.maximum(until_h - t[rest & rate], 0.0)
        dur[rest & ~rate] = 0.0
    out[:, 0] = t
    out[:, 1] = ch
    out[:, 2] = np.where(rate, value * dur * per_h, value)
    out[:, 3] = dur
    if dropped is not None:
        dropped.update(counts)
    return out

"""Turn a one-subject event history and dose plans into the tensors of the twin's contract.

Codes are mapped to channels with the twin's own metadata (each feature's name, code and
match kind), so the twin file alone decides what a history means. Nothing is dropped
silently: an unknown code is an error unless the caller allows skipping (then counted).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch
import yaml

from twinode.data.readers import read_events
from twinode.errors import DataError

PLAN_FIELDS = ("name", "time_h", "amount", "duration_h")


@dataclass
class History:
    times: torch.Tensor  # [N]
    values: torch.Tensor  # [N, D]
    mask: torch.Tensor  # [N, D]
    static: torch.Tensor  # [S], NaN = unknown
    doses: torch.Tensor  # [M, 4] past doses
    subject_id: int
    skipped: dict[str, int] = field(default_factory=dict)  # code -> rows skipped

    @property
    def anchor(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0


@dataclass
class Plan:
    label: str
    doses: torch.Tensor  # [M, 4]


def _matches(feature: dict, code: str) -> bool:
    kind, pattern = feature.get("match", "exact"), feature.get("code", feature["name"])
    if code == feature["name"]:
        return True
    if kind == "prefix":
        return code.startswith(pattern)
    if kind == "regex":
        return re.fullmatch(pattern, code) is not None
    return code == pattern


def _resolver(meta: dict):
    roles = [("measurement", meta["measurements"]), ("static", meta["statics"]), ("intervention", meta["interventions"])]
    cache: dict[str, tuple[str, int] | None] = {}

    def resolve(code: str) -> tuple[str, int] | None:
        if code not in cache:
            cache[code] = next(((role, i) for role, feats in roles for i, f in enumerate(feats) if _matches(f, code)), None)
        return cache[code]

    return resolve


def read_history(path: str | Path, meta: dict, *, skip_unknown: bool = False) -> History:
    raw = read_events(path)
    ev = raw.events
    if raw.time_is_absolute:
        raise DataError("history times are timestamps; twinode-predict expects hours since the stay's start (numbers)",
                        file=str(path), hint="convert time to hours since admission")
    subjects = ev["subject_id"].unique().to_list()
    if len(subjects) != 1:
        raise DataError(f"history must hold one subject, found {len(subjects)}: {sorted(subjects)[:10]}", file=str(path))
    resolve = _resolver(meta)
    outcomes = set(meta.get("outcomes", []))
    n_meas, n_stat = len(meta["measurements"]), len(meta["statics"])
    obs: dict[float, dict[int, float]] = {}
    static = torch.full((n_stat,), float("nan"))
    doses, skipped = [], {}
    has_dur = "duration_h" in ev.columns
    for r in ev.iter_rows(named=True):
        code, t, v = r["code"], r["time"], r["numeric_value"]
        where = dict(file=str(path), subject=r["subject_id"], code=code, row=r["_row"])
        hit = resolve(code)
        if hit is None:
            if code in outcomes or skip_unknown:
                skipped[code] = skipped.get(code, 0) + 1
                continue
            known = [f["name"] for f in meta["measurements"] + meta["statics"] + meta["interventions"]]
            raise DataError(f"unknown code {code!r}; this twin knows {known}", **where,
                            hint="pass --skip-unknown-codes to skip (and count) such rows")
        if t is None or not math.isfinite(t):
            raise DataError("time is missing or not finite", **where)
        if v is None or not math.isfinite(v):
            raise DataError("numeric_value is missing or not finite", **where)
        role, i = hit
        if role == "measurement":
            obs.setdefault(float(t), {})[i] = float(v)  # same time and code: the last row wins
        elif role == "static":
            static[i] = float(v)
        else:
            dur = r["duration_h"] if has_dur and r["duration_h"] is not None else 0.0
            doses.append([float(t), float(i), float(v), float(dur)])
    times = sorted(obs)
    values, mask = torch.zeros(len(times), n_meas), torch.zeros(len(times), n_meas)
    for k, t in enumerate(times):
        for i, v in obs[t].items():
            values[k, i], mask[k, i] = v, 1.0
    return History(torch.tensor(times, dtype=torch.float32), values, mask, static,
                   torch.tensor(doses, dtype=torch.float32).reshape(-1, 4), int(subjects[0]), skipped)


def read_yaml_or_json(path: str | Path, what: str):
    """The parsed contents of a ``.json`` file (JSON) or any other file (YAML); a DataError
    naming ``what`` and the file when it is missing or does not parse."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found", file=str(path))
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text()
        return json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} is not valid {kind}: {str(exc).splitlines()[0]}", file=str(path)) from None


def dose_row(d, k: int, names: dict, anchor: float, where: dict) -> list[float]:
    """One planned dose ``{name, time_h, amount[, duration_h]}`` -> ``[time_h, channel, amount,
    duration_h]``; ``names`` maps intervention names to channels, ``where`` locates errors."""
    if not isinstance(d, dict) or set(d) - set(PLAN_FIELDS) or not {"name", "time_h", "amount"} <= set(d):
        raise DataError(f"dose {k} must be a mapping with name, time_h, amount[, duration_h], got {d!r}", **where)
    if d["name"] not in names:
        raise DataError(f"dose {k}: unknown intervention {d['name']!r}; this twin knows {sorted(names)}", **where)
    try:
        t, amount, dur = float(d["time_h"]), float(d["amount"]), float(d.get("duration_h") or 0.0)
    except (TypeError, ValueError):
        raise DataError(f"dose {k}: time_h, amount and duration_h must be numbers, got {d!r}", **where) from None
    if not all(math.isfinite(x) for x in (t, amount, dur)) or amount < 0 or dur < 0:
        raise DataError(f"dose {k}: values must be finite, amount and duration_h >= 0, got {d!r}", **where)
    if t < anchor:
        raise DataError(f"dose {k} at {t} h is before the end of the history ({anchor} h); a plan holds future doses, "
                        "past doses belong in the history", **where)
    return [t, float(names[d["name"]]), amount, dur]


def read_plan(path: str | Path, meta: dict, anchor: float) -> Plan:
    """A plan: a YAML/JSON list of doses ``{name, time_h, amount, duration_h}``, or a mapping
    ``{label: ..., doses: [...]}``. Times are on the history's clock and not before its end."""
    data = read_yaml_or_json(path, "plan")
    label = Path(path).stem
    if isinstance(data, dict):
        label, data = str(data.get("label", label)), data.get("doses")
    if data is None:
        data = []  # an empty plan: no further doses
    if not isinstance(data, list):
        raise DataError(f"plan must be a list of doses {list(PLAN_FIELDS)}, got {type(data).__name__}", file=str(path))
    names = {f["name"]: i for i, f in enumerate(meta["interventions"])}
    rows = [dose_row(d, k, names, anchor, dict(file=str(path), row=k)) for k, d in enumerate(data)]
    return Plan(label, torch.tensor(rows, dtype=torch.float32).reshape(-1, 4))


def frame_rows(plan: str, query: torch.Tensor, mean: torch.Tensor, samples: torch.Tensor, meta: dict,
               q_low: float, q_high: float) -> pl.DataFrame:
    """Long format: one row per (plan, time, measurement) with mean and a sampled interval."""
    lo, hi = torch.quantile(samples, torch.tensor([q_low, q_high]), dim=0)
    names = [m["name"] for m in meta["measurements"]]
    units = [m.get("unit", "") for m in meta["measurements"]]
    q, d = mean.shape
    return pl.DataFrame({
        "plan": [plan] * (q * d),
        "time_h": query.repeat_interleave(d).tolist(),
        "name": names * q,
        "unit": units * q,
        "mean": mean.reshape(-1).tolist(),
        f"q{round(q_low * 100):02d}": lo.reshape(-1).tolist(),
        f"q{round(q_high * 100):02d}": hi.reshape(-1).tolist(),
    })

"""Candidate dose plans from a YAML/JSON file: a list of ``{label, doses: [...]}`` or a mapping
``label -> [doses]``; each dose ``{name, time_h, amount[, duration_h]}`` on the history's clock."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import yaml

from twinode.errors import DataError


def _dose(d, k: int, names: dict, anchor: float, where: dict) -> list[float]:
    if not isinstance(d, dict) or not {"name", "time_h", "amount"} <= set(d) or set(d) - {"name", "time_h", "amount", "duration_h"}:
        raise DataError(f"dose {k} must be a mapping with name, time_h, amount[, duration_h], got {d!r}", **where)
    if d["name"] not in names:
        raise DataError(f"dose {k}: unknown intervention {d['name']!r}; this twin knows {sorted(names)}", **where)
    try:
        t, a, dur = float(d["time_h"]), float(d["amount"]), float(d.get("duration_h") or 0.0)
    except (TypeError, ValueError):
        raise DataError(f"dose {k}: time_h, amount and duration_h must be numbers, got {d!r}", **where) from None
    if not all(math.isfinite(x) for x in (t, a, dur)) or a < 0 or dur < 0:
        raise DataError(f"dose {k}: values must be finite, amount and duration_h >= 0, got {d!r}", **where)
    if t < anchor:
        raise DataError(f"dose {k} at {t} h is before the end of the history ({anchor} h)", **where)
    return [t, float(names[d["name"]]), a, dur]


def read_candidates(path: str | Path, meta: dict, anchor: float) -> list[tuple[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise DataError("candidates file not found", file=str(path))
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DataError(f"candidates are not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(exc).splitlines()[0]}",
                        file=str(path)) from None
    if isinstance(data, dict):
        data = [{"label": k, "doses": v} for k, v in data.items()]
    if not isinstance(data, list) or not data:
        raise DataError("candidates must be a non-empty list of {label, doses} or a mapping label -> doses", file=str(path))
    names = {f["name"]: i for i, f in enumerate(meta["interventions"])}
    out, seen = [], set()
    for r, plan in enumerate(data):
        where = dict(file=str(path), row=r)
        if not isinstance(plan, dict) or "label" not in plan:
            raise DataError(f"plan {r} must be a mapping with label and doses, got {plan!r}", **where)
        label, doses = str(plan["label"]), plan.get("doses") or []
        if label in seen:
            raise DataError(f"plan labels must be distinct, {label!r} repeats", **where)
        if not isinstance(doses, list):
            raise DataError(f"plan {label!r}: doses must be a list, got {type(doses).__name__}", **where)
        seen.add(label)
        rows = [_dose(d, k, names, anchor, where) for k, d in enumerate(doses)]
        out.append((label, torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)))
    return out

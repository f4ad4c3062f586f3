"""Candidate dose plans from a YAML/JSON file: a list of ``{label, doses: [...]}`` or a mapping
``label -> [doses]``; each dose ``{name, time_h, amount[, duration_h]}`` on the history's clock."""

from __future__ import annotations

from pathlib import Path

import torch

from twinode.errors import DataError
from twinode.export.inputs import dose_row, read_yaml_or_json


def read_candidates(path: str | Path, meta: dict, anchor: float) -> list[tuple[str, torch.Tensor]]:
    data = read_yaml_or_json(path, "candidates")
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
        rows = [dose_row(d, k, names, anchor, where) for k, d in enumerate(doses)]
        out.append((label, torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)))
    return out

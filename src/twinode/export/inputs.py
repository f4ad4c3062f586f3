"""Turn a one-subject event history and dose plans into the tensors of the twin's contract.

A history is read by :func:`twinode.data.events.read_subject` with the FeatureSpec the twin
was trained with (from its ``twinode.json``), so it means what the same events meant in
training: same code matching, valid ranges, duplicate rule, dose rules and window. Nothing is
dropped silently: dropped rows are counted by reason, an unknown code is an error unless the
caller allows skipping (then counted).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
import yaml

from twinode.data.events import SubjectEvents, read_subject
from twinode.data.rules import spec_from_meta
from twinode.errors import DataError
from twinode.export.plan_mapping import plan_from_mapping
from twinode.limits import load_document

PLAN_FIELDS = ("name", "time_h", "amount", "duration_h")


@dataclass
class History:
    times: torch.Tensor  # [N]
    values: torch.Tensor  # [N, D] original units
    mask: torch.Tensor  # [N, D]
    static: torch.Tensor  # [S], NaN = unknown
    doses: torch.Tensor  # [M, 4] past doses (open rate infusions run to the window's end)
    subject_id: int
    skipped: dict[str, int] = field(default_factory=dict)  # code -> rows skipped
    dropped: Counter = field(default_factory=Counter)  # reason -> rows not used (or noted)
    warnings: list[str] = field(default_factory=list)
    source: SubjectEvents | None = None

    @property
    def anchor(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0

    def doses_until(self, until_h: float) -> torch.Tensor:
        """Past doses with open rate infusions running to ``max(window_hours, until_h)``."""
        if self.source is None:
            return self.doses
        return torch.from_numpy(np.ascontiguousarray(self.source.doses_until(until_h), np.float32)).reshape(-1, 4)


@dataclass
class Plan:
    label: str
    doses: torch.Tensor  # [M, 4]
    notes: Counter = field(default_factory=Counter)


def history_from_subject(sub: SubjectEvents) -> History:
    r = sub.record
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    return History(t(r.times), t(r.values), t(r.mask), t(r.static), t(r.doses).reshape(-1, 4), sub.subject_id,
                   dict(sub.skipped), Counter(sub.dropped), list(sub.warnings), sub)


def read_history(path: str | Path, meta: dict, *, skip_unknown: bool | None = None, subject: int | None = None,
                 time_origin=None, window_hours: float | None = None, command: str = "twinode-predict") -> History:
    """One subject's events (CSV/parquet in hours or timestamps, or a MEDS folder) -> :class:`History`.

    ``skip_unknown=None`` skips unknown codes in timestamped (MEDS) data and refuses them in
    hour-valued files; see :func:`twinode.data.events.read_subject` for the other options."""
    from twinode.limits import MAX_HISTORY_DOSES, MAX_HISTORY_POINTS, check_count

    sub = read_subject(path, spec_from_meta(meta), subject=subject, time_origin=time_origin, window_hours=window_hours,
                       skip_unknown=skip_unknown, command=command)
    history = history_from_subject(sub)
    hint = "pass one subject's stay (--subject, --window-hours) or a shorter history"
    check_count("history time points", len(history.times), MAX_HISTORY_POINTS, file=str(path), hint=hint)
    check_count("history dose rows", int(history.doses.shape[0]), MAX_HISTORY_DOSES, file=str(path), hint=hint)
    return history


def read_yaml_or_json(path: str | Path, what: str):
    """The parsed contents of a ``.json`` file (JSON) or any other file (YAML); a DataError
    naming ``what`` and the file when it is missing or does not parse."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found", file=str(path))
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text()
        return load_document(text, kind, file=str(path), what=what)  # sizes and YAML aliases bounded
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


def bolus_rows(doses: torch.Tensor, meta: dict, notes: Counter | None = None) -> torch.Tensor:
    """The bolus rule on contract rows: a bolus channel's duration is ignored (and counted)."""
    kinds = [f.get("kind", "bolus") for f in meta["interventions"]]
    if not doses.shape[0]:
        return doses
    bolus = torch.tensor([kinds[int(c)] == "bolus" for c in doses[:, 1].tolist()], dtype=torch.bool)
    hit = bolus & (doses[:, 3] > 0)
    if bool(hit.any()):
        if notes is not None:
            for c in doses[hit, 1].tolist():
                notes[f"bolus_duration_ignored:{meta['interventions'][int(c)]['name']}"] += 1
        doses = doses.clone()
        doses[hit, 3] = 0.0
    return doses


def read_plan(path: str | Path, meta: dict, anchor: float) -> Plan:
    """A plan: a YAML/JSON list of doses ``{name, time_h, amount, duration_h}``, or a mapping
    ``{label: ..., doses: [...]}``. Times are on the history's clock and not before its end."""
    data = read_yaml_or_json(path, "plan")
    label = Path(path).stem
    if isinstance(data, dict):
        label, data = plan_from_mapping(data, label, str(path))  # {label, doses} or one dose; other keys refused
    if data is None:
        data = []  # an empty plan: no further doses
    if not isinstance(data, list):
        raise DataError(f"plan must be a list of doses {list(PLAN_FIELDS)}, got {type(data).__name__}", file=str(path))
    names = {f["name"]: i for i, f in enumerate(meta["interventions"])}
    rows = [dose_row(d, k, names, anchor, dict(file=str(path), row=k)) for k, d in enumerate(data)]
    notes: Counter = Counter()
    doses = bolus_rows(torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), meta, notes)
    return Plan(label, doses, notes)


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

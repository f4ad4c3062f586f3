"""Scenario files (the simglucose reference format) -> per-minute UVA/Padova trajectories.

A scenario file is a JSON list of objects::

    {"id": "s0", "patient": "adolescent#001", "minutes": 2880, "basal_u_per_h": 0.84,
     "meals": [[minute, grams], ...], "boluses": [[minute, units], ...]}

Meals are eaten at 5 g/min from their minute; boluses are delivered within their minute;
the basal rate is constant. The output has one row per scenario and minute 0..minutes:
``scenario, patient, minute, x0..x12, gsub_mg_dl`` (the reference trajectories' columns).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from twinode.data.simulators.uva_padova import N_STATES, UVAPadovaSimulator, load_patients, patient_names
from twinode.errors import DataError

_KEYS = ("id", "patient", "minutes", "basal_u_per_h", "meals", "boluses")


@dataclass(frozen=True)
class Scenario:
    id: str
    patient: str
    minutes: int
    basal_u_per_h: float
    meals: tuple[tuple[int, float], ...]
    boluses: tuple[tuple[int, float], ...]


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Parse and check a scenario file; a bad entry raises a DataError naming file, scenario and key."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such scenario file", file=str(path), hint="give a scenarios.json path")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {exc}", file=str(path)) from exc
    if not isinstance(doc, list) or not doc:
        raise DataError(f"expected a non-empty JSON list of scenarios, got {type(doc).__name__}", file=str(path))
    known = set(patient_names())
    out, seen = [], set()
    for i, raw in enumerate(doc):
        out.append(_scenario(raw, i, str(path), known))
        if out[-1].id in seen:
            raise DataError(f"duplicate scenario id {out[-1].id!r}", file=str(path), row=i)
        seen.add(out[-1].id)
    return out


def _scenario(raw, i: int, file: str, known: set[str]) -> Scenario:
    where = dict(file=file, row=i)
    if not isinstance(raw, dict):
        raise DataError(f"scenario must be an object, got {type(raw).__name__}", **where)
    missing = [k for k in _KEYS if k not in raw]
    if missing:
        raise DataError(f"scenario misses key(s) {missing}", **where, hint=f"each scenario needs {list(_KEYS)}")
    sid = str(raw["id"])
    where["subject"] = sid
    if raw["patient"] not in known:
        raise DataError(f"unknown patient {raw['patient']!r}", **where, hint="use adolescent#001..010, adult#001..010 or child#001..010")
    minutes = raw["minutes"]
    if not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 1:
        raise DataError(f"'minutes' must be a positive integer, got {minutes!r}", **where)
    basal = _number(raw["basal_u_per_h"], "basal_u_per_h", where)
    events = {}
    for key in ("meals", "boluses"):
        items = raw[key]
        if not isinstance(items, list):
            raise DataError(f"'{key}' must be a list of [minute, amount], got {type(items).__name__}", **where)
        pairs = []
        for j, item in enumerate(items):
            if not (isinstance(item, (list, tuple)) and len(item) == 2):
                raise DataError(f"'{key}[{j}]' must be [minute, amount], got {item!r}", **where)
            m, amount = item
            if not isinstance(m, int) or isinstance(m, bool) or not 0 <= m < minutes:
                raise DataError(f"'{key}[{j}]' minute must be an integer in [0, {minutes}), got {m!r}", **where)
            pairs.append((m, _number(amount, f"{key}[{j}] amount", where)))
        events[key] = tuple(pairs)
    return Scenario(sid, raw["patient"], minutes, basal, events["meals"], events["boluses"])


def _number(value, key: str, where: dict) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise DataError(f"'{key}' must be a finite number >= 0, got {value!r}", **where)
    return float(value)


def scenario_inputs(scenarios: list[Scenario], dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Meal grams and insulin U/min ``[S, max minutes]`` (zero past a scenario's end)."""
    T = max(s.minutes for s in scenarios)
    meals = torch.zeros(len(scenarios), T, dtype=dtype)
    insulin = torch.zeros(len(scenarios), T, dtype=dtype)
    for i, s in enumerate(scenarios):
        insulin[i, : s.minutes] = s.basal_u_per_h / 60.0
        for m, g in s.meals:
            meals[i, m] += g
        for m, u in s.boluses:
            insulin[i, m] += u
    return meals, insulin


def simulate_scenarios(scenarios: list[Scenario], device: str = "cpu", dtype=torch.float64, substeps: int = 1) -> pl.DataFrame:
    """All scenarios in one batch -> the reference's per-minute trajectory table."""
    patients = load_patients([s.patient for s in scenarios], device=device, dtype=dtype)
    meals, insulin = scenario_inputs(scenarios, dtype)
    result = UVAPadovaSimulator(patients, substeps).simulate(meals.to(device), insulin.to(device))
    states = result.states.cpu().numpy()
    gsub = result.gsub.cpu().numpy()
    frames = []
    for i, s in enumerate(scenarios):
        n = s.minutes + 1
        cols = {"scenario": [s.id] * n, "patient": [s.patient] * n, "minute": np.arange(n, dtype=np.int64)}
        cols.update({f"x{k}": states[i, :n, k] for k in range(N_STATES)})
        cols["gsub_mg_dl"] = gsub[i, :n]
        frames.append(pl.DataFrame(cols))
    return pl.concat(frames)

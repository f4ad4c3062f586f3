"""A tiny untrained glucose twin (the glucose spec's channels, CGM with the target range
70-180 mg/dL in its metadata), exported to twin.pt once."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch

from twinode.data.spec_files import load_spec
from twinode.export.torchscript import export_twin, load_verified_twin
from twinode.models.twin import PatientTwin
from twinode.solvers import FixedGridSolver

NORMALISER = dict(meas_mean=[150.0], meas_std=[50.0], static_mean=[60.0, 1.5, 30.0], static_std=[20.0, 0.8, 15.0],
                  dose_scale=[50.0, 5.0, 1.0])


@pytest.fixture(scope="session")
def glucose_twin_file(tmp_path_factory):
    return export_glucose_twin(tmp_path_factory.mktemp("apps") / "twin.pt", CGM={"target_range": (70.0, 180.0)})


def export_glucose_twin(path, **planning: dict):
    """The tiny glucose twin with planning fields set per feature name, e.g. ``CGM={"target_range": (70, 180)}``;
    none set where not given (the shipped glucose spec sets them)."""
    torch.manual_seed(0)
    twin = PatientTwin(1, 3, 3, solver=functools.partial(FixedGridSolver, step=0.5), latent_dim=8, hidden=16,
                       encoder_hidden=16, risk_head=False)
    spec = load_spec("glucose")
    unset = {"target_range": None, "max_dose": None, "min_spacing_h": None}
    spec = dataclasses.replace(spec, features=tuple(dataclasses.replace(f, **{**unset, **planning.get(f.name, {})})
                                                    for f in spec.features))
    export_twin(twin, NORMALISER, spec, path, solver={"method": "rk4", "step": 0.5})
    return path


@pytest.fixture(scope="session")
def glucose_twin(glucose_twin_file):
    return load_verified_twin(glucose_twin_file)


def history_rows(n: int = 36, step_h: float = 1 / 12) -> list[dict]:
    """Statics, a basal infusion, a meal with its bolus, and ``n`` CGM readings (stream events)."""
    ev = [{"time": 0.0, "code": "BodyWeight", "value": 70.0}, {"time": 0.0, "code": "AgeGroup", "value": 2},
          {"time": 0.0, "code": "Age", "value": 40}, {"time": 0.0, "code": "InsulinBasal", "value": 1.0, "duration_h": 24.0},
          {"time": 1.0, "code": "Carbs", "value": 60.0}, {"time": 1.0, "code": "InsulinBolus", "value": 5.0}]
    ev += [{"time": k * step_h, "code": "CGM", "value": 120.0 + 20.0 * torch.sin(torch.tensor(k / 6.0)).item()} for k in range(n)]
    return sorted(ev, key=lambda e: e["time"])


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def rows_of():
    return history_rows

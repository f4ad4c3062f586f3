"""Small exported twins for the export tests: built in code (no training), exported with the
real export path, so each test file gets a genuine twin.pt in well under a second."""

from __future__ import annotations

import pytest
import torch

from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.export.predictor import TwinPredictor
from twinode.export.torchscript import build_predictor, export_twin
from twinode.models.twin import PatientTwin

NORMALISER = {"meas_mean": [85.0, 75.0, 0.8, 37.0], "meas_std": [12.0, 10.0, 0.4, 0.6],
              "static_mean": [62.0, 78.0, 0.5], "static_std": [14.0, 15.0, 0.5], "dose_scale": [6.0]}


def make_twin(risk_head: bool = True, seed: int = 0) -> PatientTwin:
    torch.manual_seed(seed)
    twin = PatientTwin(4, 3, 1, latent_dim=8, hidden=16, encoder_hidden=16, risk_head=risk_head)
    with torch.no_grad():  # a visible dose effect, so what-if plans differ
        for p in twin.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return twin.eval()


def make_predictor(risk_head: bool = True) -> TwinPredictor:
    return build_predictor(make_twin(risk_head), NORMALISER, feature_spec()).eval()


@pytest.fixture(scope="session")
def twin_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("twin") / "twin.pt"
    return export_twin(make_twin(), NORMALISER, feature_spec(), path, solver={"name": "rk4", "step": 0.5},
                       run_id="run-123", data_fingerprint="f" * 64)


def example_inputs():
    times = torch.tensor([0.0, 1.0, 2.5, 4.0])
    values = torch.tensor([[80.0, 75.0, 1.5, 37.0], [82.0, float("nan"), 0.0, 37.2],
                           [85.0, 70.0, 2.0, 37.5], [90.0, 65.0, 2.5, 37.9]])
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    static = torch.tensor([60.0, 80.0, float("nan")])
    doses = torch.tensor([[2.0, 0.0, 8.0, 0.0], [5.0, 0.0, 4.0, 2.0]])
    query = torch.tensor([-1.0, 3.0, 5.0, 8.0, 12.0])
    return times, values, mask, static, doses, query

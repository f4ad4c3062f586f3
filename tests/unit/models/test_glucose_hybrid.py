"""GlucoseMinimalModel: the hybrid glucose twin's prior, its exact special cases, and the
hybrid twin through the export contract (TorchScript, torch-only load, plan gradients)."""

import functools
import math
import subprocess
import sys
import textwrap

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_train
from twinode.errors import ConfigError
from twinode.models import PatientTwin
from twinode.models.dynamics import HybridField, MLPField
from twinode.models.mechanistic import GlucoseMinimalModel
from twinode.solvers import FixedGridSolver

LAT, E = 6, 2


def silenced(field: MLPField) -> MLPField:
    with torch.no_grad():
        field.out.weight.zero_()
        field.out.bias.zero_()
        field.control.weight.zero_()
    return field


def _solver(prior, step=0.1):
    return FixedGridSolver(HybridField(prior, silenced(MLPField(LAT, 3, E, hidden=8, half_life_h=[1.0, 1.5, 1.5]))),
                           method="rk4", step=step)


def test_without_insulin_or_meals_glucose_relaxes_exactly():
    """x = 0, no doses: dg/dt = egp - p1 g, so g(t) = egp/p1 + (g0 - egp/p1) exp(-p1 t)."""
    prior = GlucoseMinimalModel(LAT, 3, p1_per_h=0.2)
    z0 = torch.tensor([[0.5, 0.0, 0.3, 0.0, 1.0, -1.0], [-1.0, 0.0, -0.1, 2.0, 0.0, 0.0]])
    tq = torch.tensor([[1.0, 3.0, 8.0], [0.5, 2.0, 12.0]])
    z = _solver(prior)(z0, torch.zeros(2), tq, torch.zeros(2, 1, 4), torch.zeros(2, E))
    eq = z0[:, 2:3] / 0.2
    exact = eq + (z0[:, 0:1] - eq) * torch.exp(-0.2 * tq)
    torch.testing.assert_close(z[..., 0], exact, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(z[..., 2:], z0[:, None, 2:].expand(-1, 3, -1))  # parameters and free coordinates stay


def test_insulin_lowers_glucose_meals_raise_it_and_a_suspended_basal_raises_it():
    prior = GlucoseMinimalModel(LAT, 3)
    solver = _solver(prior, step=0.25)
    z0 = torch.zeros(1, LAT)
    z0[0, 1] = 0.3  # the insulin action of a running basal
    tq = torch.tensor([[1.0, 2.0, 4.0, 6.0]])
    s = torch.zeros(1, E)

    def glucose(doses):
        return solver(z0, torch.zeros(1), tq, torch.tensor([doses]), s)[0, :, 0]

    basal = [0.0, 2.0, 3.0, 24.0]
    base = glucose([basal])
    assert (glucose([basal, [0.5, 1.0, 1.0, 0.0]]) < base - 1e-3).all()  # a bolus
    assert (glucose([basal, [0.5, 0.0, 1.0, 0.0]]) > base + 1e-3).all()  # a meal
    assert (glucose([[0.0, 2.0, 0.0, 24.0]])[1:] > base[1:] + 1e-3).all()  # no basal
    # A more sensitive patient (s > 0) responds more to the same bolus.
    z_sens = z0.clone()
    z_sens[0, 3] = 1.0
    drop = lambda z: (solver(z, torch.zeros(1), tq, torch.tensor([[basal]]), s)
                      - solver(z, torch.zeros(1), tq, torch.tensor([[basal, [0.5, 1.0, 1.0, 0.0]]]), s))[0, -1, 0]
    assert drop(z_sens) > drop(z0) > 0


def test_a_wild_encoder_state_stays_finite_on_a_one_hour_grid():
    prior = GlucoseMinimalModel(LAT, 3)
    z0 = torch.tensor([[8.0, 50.0, 20.0, 30.0, 0.0, 0.0], [-8.0, -50.0, -20.0, -30.0, 0.0, 0.0]])
    z = _solver(prior, step=1.0)(z0, torch.zeros(2), torch.tensor([[24.0], [24.0]]), torch.zeros(2, 1, 4), torch.zeros(2, E))
    assert bool(torch.isfinite(z).all())


def test_bad_channels_or_indices_are_config_errors():
    with pytest.raises(ConfigError, match="intervention channel 2"):
        GlucoseMinimalModel(LAT, 2)
    with pytest.raises(ConfigError, match="four distinct latent indices"):
        GlucoseMinimalModel(3, 3)


def test_model_glucose_hybrid_composes_and_builds(tmp_path):
    from twinode.training.pipeline import build_twin
    from twinode.data.spec_files import load_spec

    cfg = compose_train(tmp_path, ["experiment=glucose", "model=glucose_hybrid"])
    twin = build_twin(cfg, {"n_measurements": 1, "n_static": 3, "n_interventions": 3}, load_spec("glucose"), trust=True)
    assert isinstance(twin.solver.field, HybridField)
    assert isinstance(twin.solver.field.mechanistic, GlucoseMinimalModel)


def test_hybrid_twin_passes_the_export_contract(tmp_path):
    """Scripted into twin.pt, loaded with torch alone, forecasts; plan gradients are finite."""
    from twinode.apps.planning import Objective, PlanSampler
    from twinode.data.spec_files import load_spec
    from twinode.export.torchscript import export_twin, load_verified_twin

    torch.manual_seed(0)
    twin = PatientTwin(1, 3, 3, solver=functools.partial(FixedGridSolver, step=1.0), latent_dim=8, hidden=16,
                       encoder_hidden=16, risk_head=False, half_life_h=[1.0, 1.5, 1.5],
                       mechanistic=functools.partial(GlucoseMinimalModel))
    norm = dict(meas_mean=[150.0], meas_std=[50.0], static_mean=[60.0, 1.5, 30.0], static_std=[20.0, 0.8, 15.0],
                dose_scale=[50.0, 5.0, 7.0])
    path = tmp_path / "twin.pt"
    export_twin(twin, norm, load_spec("glucose"), path, solver={"method": "rk4", "step": 1.0})
    script = textwrap.dedent(f"""
        import sys, torch
        sys.modules["twinode"] = None
        twin = torch.jit.load({str(path)!r})
        t = torch.arange(0, 6, 1 / 12)
        v = (150 + 20 * torch.sin(t)).unsqueeze(1)
        doses = torch.tensor([[0.0, 2.0, 24.0, 24.0], [6.5, 0.0, 60.0, 0.0], [6.5, 1.0, 5.0, 0.0]])
        mean, std = twin.forecast(t, v, torch.ones_like(v), torch.tensor([70.0, 2.0, 40.0]), doses,
                                  torch.tensor([7.0, 9.0, 12.0]))
        assert mean.shape == (3, 1) and bool(torch.isfinite(mean).all()) and bool((std > 0).all())
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    scripted, _ = load_verified_twin(path)
    t = torch.arange(0, 6, 1 / 12)
    v = (150 + 20 * torch.sin(t)).unsqueeze(1)
    hist = (t, v, torch.ones_like(v), torch.tensor([70.0, 2.0, 40.0]))
    q = Objective(horizon_h=4.0).query(float(t[-1]))
    sampler = PlanSampler(scripted, hist, q, 4, 0)
    for p in scripted.parameters():
        p.requires_grad_(False)
    doses = torch.tensor([[0.0, 2.0, 24.0, 24.0], [6.0, 0.0, 60.0, 0.0], [6.25, 1.0, 5.0, 0.0]], requires_grad=True)
    g, = torch.autograd.grad(sampler(doses).sum(), doses)
    assert bool(torch.isfinite(g).all()) and g[1:, 2].abs().min() > 0

"""HybridField: mechanistic prior + neural residual, with the VasopressorMAP worked example."""

import functools
import math

import pytest
import torch

from twinode.errors import ConfigError
from twinode.models import PatientTwin
from twinode.models.dynamics import HybridField, MLPField
from twinode.models.mechanistic import VasopressorMAP
from twinode.solvers import FixedGridSolver

LAT, E = 4, 2


def silenced(field: MLPField) -> MLPField:
    """A residual that contributes nothing, so the prior alone is visible."""
    with torch.no_grad():
        field.out.weight.zero_()
        field.out.bias.zero_()
        field.control.weight.zero_()
    return field


def test_hybrid_is_prior_plus_residual():
    torch.manual_seed(0)
    prior, residual = VasopressorMAP(LAT, 1), MLPField(LAT, 1, E, hidden=8)
    hybrid = HybridField(prior, residual)
    t, z, s = torch.rand(3) * 5, torch.randn(3, LAT), torch.randn(3, E)
    doses = torch.tensor([[[1.0, 0.0, 2.0, 0.0]]] * 3)
    u = residual.dose_effect(t, doses)
    torch.testing.assert_close(hybrid(t, z, doses, s), prior(t, z, u, s) + residual(t, z, doses, s))


def test_prior_alone_relaxes_pressure_to_its_set_point_exactly():
    """No drug: z_map(t) = target + (z_map(0) - target) exp(-rate t), solved by the twin's RK4."""
    torch.manual_seed(0)
    prior = VasopressorMAP(LAT, 1, rate_per_h=0.6)
    solver = FixedGridSolver(HybridField(prior, silenced(MLPField(LAT, 1, E, hidden=8))), method="rk4", step=0.25)
    z0 = torch.tensor([[-1.0, 0.5, 0.3, 0.0], [2.0, -0.5, 0.0, 1.0]])
    tq = torch.tensor([[1.0, 3.0, 6.0], [0.5, 2.0, 8.0]])
    no_dose = torch.zeros(2, 1, 4)
    z = solver(z0, torch.zeros(2), tq, no_dose, torch.zeros(2, E))
    exact = z0[:, 1:2] + (z0[:, 0:1] - z0[:, 1:2]) * torch.exp(-0.6 * tq)
    torch.testing.assert_close(z[..., 0], exact, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(z[..., 1:], z0[:, None, 1:].expand(-1, 3, -1))  # no prior term elsewhere


def test_a_bolus_lifts_pressure_through_the_emax_response():
    torch.manual_seed(0)
    prior = VasopressorMAP(LAT, 1, rate_per_h=0.6, emax=1.0, ec50=1.0)
    solver = FixedGridSolver(HybridField(prior, silenced(MLPField(LAT, 1, E, hidden=8, half_life_h=[2.0]))), step=0.25)
    z0 = torch.zeros(1, LAT)
    tq = torch.tensor([[1.0, 2.0, 4.0, 12.0, 30.0]])
    dosed = solver(z0, torch.zeros(1), tq, torch.tensor([[[0.5, 0.0, 3.0, 0.0]]]), torch.zeros(1, E))[0, :, 0]
    assert (dosed[:4] > 0.05).all(), dosed  # pressure rises after the bolus
    assert dosed[0] < dosed[1] < dosed[2], dosed  # as the drug is absorbed (peak effect 2 h after the dose)
    assert dosed[-1] < 0.05 * dosed.max()  # and returns to the set point once the drug has cleared


def test_bad_prior_indices_are_rejected():
    with pytest.raises(ConfigError, match="intervention channel 1"):
        VasopressorMAP(LAT, 1, drug_channel=1)
    with pytest.raises(ConfigError, match="distinct latent indices"):
        VasopressorMAP(LAT, 1, map_index=2, target_index=2)


def test_twin_with_a_prior_scripts_and_trains_its_prior_parameters():
    torch.manual_seed(0)
    twin = PatientTwin(3, 2, 1, latent_dim=LAT, hidden=8, encoder_hidden=8, static_embed=E,
                       mechanistic=functools.partial(VasopressorMAP, rate_per_h=0.3))
    assert isinstance(twin.solver.field, HybridField)
    prior = twin.solver.field.mechanistic
    assert math.isclose(float(torch.nn.functional.softplus(prior.raw_rate.detach())), 0.3, rel_tol=1e-5)
    t = torch.tensor([[0.0, 1.0, 2.0]])
    args = (t, torch.randn(1, 3, 3), torch.ones(1, 3, 3), torch.tensor([3]), torch.tensor([2.0]), torch.randn(1, 2),
            torch.ones(1, 2), torch.tensor([[[0.5, 0.0, 1.0, 0.0]]]), torch.tensor([[3.0, 5.0]]))
    mean, _ = twin(*args)
    mean.sum().backward()
    assert prior.raw_rate.grad is not None and prior.raw_emax.grad.abs() > 0
    scripted = torch.jit.script(twin)
    torch.testing.assert_close(scripted(*args)[0], mean)

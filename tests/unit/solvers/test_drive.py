"""The fixed grid's precomputed drive gives the same solution and gradients as evaluating the
field's ``forward`` at every stage (the path of the adaptive solvers and of user fields)."""

import pytest
import torch

from twinode.models.dynamics import DoseEffect, DrivenField, HybridField, MLPField
from twinode.models.mechanistic import VasopressorMAP
from twinode.solvers import FixedGridSolver

B, L, C, E = 3, 4, 2, 2


def doses():
    # Per subject: a bolus on channel 0 and a 3-h infusion on channel 1, at different times.
    d = torch.tensor([[[1.0, 0.0, 2.0, 0.0], [5.0, 1.0, 3.0, 3.0]],
                      [[-2.0, 1.0, 1.0, 0.0], [0.5, 0.0, 4.0, 0.0]],
                      [[8.0, 0.0, 1.5, 2.0], [9.0, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    return d


def fields():
    torch.manual_seed(0)
    mlp = MLPField(L, C, E, hidden=16, half_life_h=[2.0, 5.0])
    torch.nn.init.normal_(mlp.out.weight, std=0.3)  # non-trivial dynamics
    torch.manual_seed(1)
    res = MLPField(L, C, E, hidden=16, half_life_h=[2.0, 5.0])
    torch.nn.init.normal_(res.out.weight, std=0.3)
    hybrid = HybridField(VasopressorMAP(latent_dim=L, n_interventions=C, static_dim=E), res)
    return {"mlp": mlp.double(), "hybrid": hybrid.double()}


def test_dose_effect_at_many_times_equals_one_time_at_a_time():
    eff = DoseEffect(C, [2.0, 5.0]).double()
    t = torch.linspace(-3.0, 14.0, 35, dtype=torch.float64).expand(B, -1)
    many = eff(t, doses())
    assert many.shape == (B, 35, C)
    for k in range(35):
        torch.testing.assert_close(many[:, k], eff(t[:, k], doses()), rtol=0, atol=1e-14)
    assert many.abs().sum() > 0


@pytest.mark.parametrize("kind", ["mlp", "hybrid"])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_drive_path_equals_forward_path_with_gradients(kind, method):
    field = fields()[kind]
    z0 = torch.randn(B, L, dtype=torch.float64, requires_grad=True)
    s = torch.randn(B, E, dtype=torch.float64, requires_grad=True)
    t0 = torch.tensor([0.0, 2.0, 5.0], dtype=torch.float64)
    tq = t0.unsqueeze(1) + torch.tensor([-4.0, -0.3, 0.7, 3.3, 9.9], dtype=torch.float64)
    fast = FixedGridSolver(field, method, 0.5)
    plain = FixedGridSolver(DrivenField(field), method, 0.5)
    za, zb = fast(z0, t0, tq, doses(), s), plain(z0, t0, tq, doses(), s)
    torch.testing.assert_close(za, zb, rtol=1e-12, atol=1e-12)
    params = [z0, s] + list(field.parameters())
    ga = torch.autograd.grad(za.square().sum(), params)
    gb = torch.autograd.grad(zb.square().sum(), params)
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert ga[-1].abs().sum() > 0


def test_a_user_field_without_a_drive_is_wrapped():
    class Decay(torch.nn.Module):
        def forward(self, t, z, doses, s):
            return -z

    solver = FixedGridSolver(Decay(), "rk4", 0.1)
    assert isinstance(solver.field, DrivenField)
    z = solver(torch.ones(1, 1), torch.zeros(1), torch.tensor([[1.0]]), torch.zeros(1, 1, 4), torch.zeros(1, 0))
    assert abs(float(z) - torch.exp(torch.tensor(-1.0)).item()) < 1e-6
    torch.jit.script(solver)  # the wrapper scripts too

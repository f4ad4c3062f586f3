import pytest
import torch

from twinode.errors import ExportError, SolverError
from twinode.solvers import Dopri5Solver, TorchdiffeqSolver, with_scriptable_solvers

from _solver_fields import DAMPED, CosGrowth, Linear, NaNRows, cos_growth_exact, linear_exact, no_doses, no_static


def _batch():
    z0 = torch.tensor([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0], [2.0, 0.0, 0.5]], dtype=torch.float64)
    t0 = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    # Unsorted, repeated (padding) and anchor-equal queries on both sides.
    tq = torch.tensor([[1.0, -2.0, 3.0, 3.0], [2.0, 5.0, 0.5, 0.5], [4.0, -1.0, -3.0, -3.0]], dtype=torch.float64)
    return z0, t0, tq


def test_per_sample_anchors_both_directions_match_exact():
    z0, t0, tq = _batch()
    z = TorchdiffeqSolver(Linear(DAMPED), rtol=1e-9, atol=1e-11)(z0, t0, tq, no_doses(3), no_static(3, 3))
    assert (z - linear_exact(DAMPED, z0, t0, tq)).abs().max() < 1e-7
    assert torch.equal(z[1, 0], z0[1])
    zc = TorchdiffeqSolver(CosGrowth(), rtol=1e-9, atol=1e-11)(z0, t0, tq, no_doses(3), no_static(3))
    assert (zc - cos_growth_exact(z0, t0, tq)).abs().max() < 5e-7


def test_parity_with_own_dopri5():
    z0, t0, tq = _batch()
    field = Linear(DAMPED)
    a = TorchdiffeqSolver(field, rtol=1e-10, atol=1e-12)(z0, t0, tq, no_doses(3), no_static(3, 3))
    b = Dopri5Solver(field, rtol=1e-10, atol=1e-12)(z0, t0, tq, no_doses(3), no_static(3, 3))
    assert (a - b).abs().max() < 1e-8


def test_adjoint_gradients_match_direct_backprop():
    z0, t0, tq = _batch()
    grads = []
    for adjoint in (False, True):
        field = Linear(DAMPED)
        s = torch.full((3, 3), 0.1, dtype=torch.float64, requires_grad=True)
        z = TorchdiffeqSolver(field, rtol=1e-8, atol=1e-10, adjoint=adjoint)(z0, t0, tq, no_doses(3), s)
        grads.append(torch.autograd.grad(z.pow(2).sum(), [s, field.A]))
    for g_direct, g_adjoint in zip(*grads):
        assert g_direct.abs().max() > 1e-3
        assert torch.allclose(g_direct, g_adjoint, rtol=1e-5, atol=1e-7)


def test_fixed_step_method_through_torchdiffeq():
    z0, t0, tq = _batch()
    # step_size counts in clock units: one query segment is 1.
    z = TorchdiffeqSolver(Linear(DAMPED), method="rk4", options={"step_size": 0.005})(z0, t0, tq, no_doses(3),
                                                                                     no_static(3, 3))
    assert (z - linear_exact(DAMPED, z0, t0, tq)).abs().max() < 1e-5


def test_nan_rows_are_named():
    s = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    with pytest.raises(SolverError, match=r"rows \[1\]|torchdiffeq"):
        TorchdiffeqSolver(NaNRows(), method="rk4", options={"step_size": 0.5})(
            torch.ones(3, 1, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
            torch.full((3, 1), 2.0, dtype=torch.float64), no_doses(3), s)


class _Wrapper(torch.nn.Module):
    def __init__(self, solver):
        super().__init__()
        self.solver = solver

    def forward(self, z0, t0, tq, doses, s):
        return self.solver(z0, t0, tq, doses, s)


def test_scripting_raises_export_error_and_scriptable_copy_works():
    z0, t0, tq = _batch()
    field = Linear(DAMPED)
    model = _Wrapper(TorchdiffeqSolver(field, rtol=1e-9, atol=1e-11))
    with pytest.raises(ExportError, match="with_scriptable_solvers"):
        torch.jit.script(model)
    assert isinstance(model.solver, TorchdiffeqSolver)  # the failed attempt left the model as it was
    export = with_scriptable_solvers(model)
    assert isinstance(export.solver, Dopri5Solver) and isinstance(model.solver, TorchdiffeqSolver)
    scripted = torch.jit.script(export)
    args = (z0, t0, tq, no_doses(3), no_static(3, 3))
    assert (scripted(*args) - model(*args)).abs().max() < 1e-7


def test_to_scriptable_shares_the_field():
    field = Linear(DAMPED)
    twin = TorchdiffeqSolver(field, rtol=1e-7, atol=1e-8).to_scriptable()
    assert isinstance(twin, Dopri5Solver) and twin.field is field and twin.rtol == 1e-7
    with pytest.raises(ExportError, match="rk4.*FixedGridSolver"):
        TorchdiffeqSolver(field, method="rk4", options={"step_size": 0.25}).to_scriptable()

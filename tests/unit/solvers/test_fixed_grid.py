import math

import numpy as np
import pytest
import torch

from twinode.errors import ConfigError, SolverError
from twinode.solvers import FixedGridSolver

from _solver_fields import (DAMPED, OSCILLATOR, CosGrowth, Linear, NaNRows, cos_growth_exact, linear_exact, no_doses,
                            no_static)

ORDERS = {"euler": 1.0, "midpoint": 2.0, "rk4": 4.0}


def observed_order(method: str, offset: float) -> float:
    """Slope of log(max error) vs log(h) on the oscillator over 2 h, queries at ``(k + offset) h``."""
    z0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    t0 = torch.zeros(1, dtype=torch.float64)
    hs, errs = [], []
    for n in (32, 64, 128, 256):
        h = 2.0 / n
        tq = (torch.arange(n, dtype=torch.float64) + offset) * h
        tq = torch.cat([tq, torch.tensor([2.0], dtype=torch.float64)]).unsqueeze(0)  # grid ends at 2
        with torch.no_grad():
            z = FixedGridSolver(Linear(OSCILLATOR), method=method, step=h)(z0, t0, tq, no_doses(1), no_static(1, 2))
        errs.append(float((z - linear_exact(OSCILLATOR, z0, t0, tq)).abs().max()))
        hs.append(h)
    return float(np.polyfit(np.log(hs), np.log(errs), 1)[0])


@pytest.mark.parametrize("method", list(ORDERS))
def test_order_of_convergence_at_nodes(method):
    order = observed_order(method, offset=1.0)
    assert abs(order - ORDERS[method]) < 0.25, f"{method}: observed order {order:.2f}"


@pytest.mark.parametrize("method", list(ORDERS))
def test_hermite_readout_between_nodes_keeps_the_order(method):
    order = observed_order(method, offset=0.37)
    # Cubic Hermite is 4th order, so it caps nothing below rk4 and rk4 itself stays ~4.
    low = 3.5 if method == "rk4" else ORDERS[method] - 0.25
    assert low < order < ORDERS[method] + 0.5, f"{method}: observed order {order:.2f} between nodes"


def test_exponential_decay_exact():
    k = torch.tensor([[-0.7]], dtype=torch.float64)
    z0 = torch.tensor([[2.0], [-1.0]], dtype=torch.float64)
    t0 = torch.zeros(2, dtype=torch.float64)
    tq = torch.tensor([[0.5, 3.0, 10.0], [1.0, 2.0, 7.5]], dtype=torch.float64)
    z = FixedGridSolver(Linear(k), "rk4", 0.05)(z0, t0, tq, no_doses(2), no_static(2, 1))
    exact = z0.unsqueeze(1) * torch.exp(-0.7 * tq).unsqueeze(-1)
    assert torch.allclose(z, exact, atol=1e-7, rtol=0)


def test_linear_system_matches_matrix_exponential_forward_and_backward():
    torch.manual_seed(0)
    B = 4
    z0 = torch.randn(B, 3, dtype=torch.float64)
    t0 = torch.tensor([0.0, 3.0, -2.0, 10.0], dtype=torch.float64)
    tq = t0.unsqueeze(1) + torch.tensor([[-5.0, -0.3, 0.0, 0.7, 6.0]] * B, dtype=torch.float64) * torch.rand(B, 1)
    z = FixedGridSolver(Linear(DAMPED), "rk4", 0.02)(z0, t0, tq, no_doses(B), no_static(B, 3))
    assert (z - linear_exact(DAMPED, z0, t0, tq)).abs().max() < 1e-6
    assert torch.equal(z[:, 2], z0)  # a query at the anchor returns the initial state


def test_per_sample_anchors_with_time_dependent_field():
    # Same relative offsets, different anchors: a solver that ignored t0 would give equal rows.
    z0 = torch.ones(3, 1, dtype=torch.float64)
    t0 = torch.tensor([0.0, 1.5, -4.0], dtype=torch.float64)
    tq = t0.unsqueeze(1) + torch.tensor([-3.0, -1.0, 2.0, 5.0], dtype=torch.float64)
    z = FixedGridSolver(CosGrowth(), "rk4", 0.05)(z0, t0, tq, no_doses(3), no_static(3))
    exact = cos_growth_exact(z0, t0, tq)
    assert (z - exact).abs().max() < 1e-6
    assert (exact[0] - exact[1]).abs().max() > 0.1


def test_nan_field_raises_naming_rows():
    s = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    tq = torch.full((4, 2), 2.0, dtype=torch.float64)
    with pytest.raises(SolverError, match=r"rows \[1, 3\].*learning rate") as info:
        FixedGridSolver(NaNRows(), "rk4", 0.5)(torch.ones(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
                                               tq, no_doses(4), s)
    assert info.value.rows == [1, 3]


@pytest.mark.parametrize("method", list(ORDERS))
def test_gradcheck(method):
    torch.manual_seed(1)
    field = Linear(DAMPED)
    solver = FixedGridSolver(field, method, 0.4)
    t0 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    tq = torch.tensor([[-1.3, 0.9, 2.0], [0.2, 3.1, 1.0]], dtype=torch.float64)
    z0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, ss, A: FixedGridSolver(_with_A(A), method, 0.4)(z, t0, tq, no_doses(2), ss),
                                    (z0, s, field.A.detach().clone().requires_grad_(True)))
    assert solver.method == method


def _with_A(A):
    f = Linear(torch.zeros(3, 3, dtype=torch.float64))
    del f.A
    f.A = A  # a plain tensor attribute, so gradcheck can perturb it
    return f


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="solver.method"):
        FixedGridSolver(Linear(OSCILLATOR), method="rk45")
    with pytest.raises(ConfigError, match="solver.step"):
        FixedGridSolver(Linear(OSCILLATOR), step=0.0)

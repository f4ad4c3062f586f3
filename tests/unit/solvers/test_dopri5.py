import pytest
import torch
import torchdiffeq

from twinode.errors import ConfigError, SolverError
from twinode.solvers import Dopri5Solver, Status

from _solver_fields import (DAMPED, OSCILLATOR, Blowup, CosGrowth, Linear, NaNRows, cos_growth_exact, linear_exact,
                            no_doses, no_static)


def test_exponential_decay_and_oscillator_within_tolerance():
    z0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=torch.float64)
    t0 = torch.zeros(2, dtype=torch.float64)
    tq = torch.tensor([[0.7, 3.0, 12.0], [1.0, 6.0, 9.0]], dtype=torch.float64)
    for A in (OSCILLATOR, torch.tensor([[-0.7, 0.0], [0.0, -0.2]], dtype=torch.float64)):
        z = Dopri5Solver(Linear(A), rtol=1e-9, atol=1e-11)(z0, t0, tq, no_doses(2), no_static(2, 2))
        assert (z - linear_exact(A, z0, t0, tq)).abs().max() < 1e-7


def test_error_shrinks_with_tolerance():
    z0 = torch.tensor([[1.0, 0.5, -1.0]], dtype=torch.float64)
    t0 = torch.zeros(1, dtype=torch.float64)
    tq = torch.linspace(0.1, 10.0, 25, dtype=torch.float64).unsqueeze(0)
    errs = []
    for tol in (1e-4, 1e-7, 1e-10):
        z = Dopri5Solver(Linear(DAMPED), rtol=tol, atol=tol)(z0, t0, tq, no_doses(1), no_static(1, 3))
        errs.append(float((z - linear_exact(DAMPED, z0, t0, tq)).abs().max().detach()))
    assert errs[0] < 1e-2 and errs[1] < errs[0] / 30 and errs[2] < errs[1] / 30, errs


def test_backward_queries_and_per_sample_anchors():
    z0 = torch.tensor([[1.0], [2.0], [0.5]], dtype=torch.float64)
    t0 = torch.tensor([0.0, 1.5, -4.0], dtype=torch.float64)
    tq = t0.unsqueeze(1) + torch.tensor([[-3.0, -1.0, 0.0, 2.0, 5.0],
                                         [-0.5, 0.0, 0.0, 7.0, 7.0],
                                         [-6.0, -6.0, 1.0, 0.2, 0.1]], dtype=torch.float64)
    z = Dopri5Solver(CosGrowth(), rtol=1e-9, atol=1e-11)(z0, t0, tq, no_doses(3), no_static(3))
    assert (z - cos_growth_exact(z0, t0, tq)).abs().max() < 1e-7
    assert torch.equal(z[1, 1], z0[1])


def test_step_size_is_per_sample():
    # Row 0 decays slowly, row 1 oscillates fast: their step counts must differ, and row 0
    # must not pay for row 1 (a batch-shared step would give both the larger count).
    class TwoRates(torch.nn.Module):
        def forward(self, t, z, doses, s):
            w = s[:, :1]
            return torch.cat([w * z[:, 1:], -w * z[:, :1]], 1)

    s = torch.tensor([[0.1], [4.0]], dtype=torch.float64)
    z0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    tau = torch.full((2, 1), 5.0, dtype=torch.float64)
    solver = Dopri5Solver(TwoRates(), rtol=1e-6, atol=1e-8)
    _, status, attempts = solver.solve(z0, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64),
                                       tau, no_doses(2), s)
    assert status.tolist() == [Status.SUCCESS.value] * 2
    assert attempts[0] * 5 < attempts[1], attempts


def test_parity_with_torchdiffeq_dopri5_at_tight_tolerance():
    torch.manual_seed(3)
    field = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = field

        def forward(self, t, z, doses, s):
            return self.net(z)

    B = 5
    z0 = torch.randn(B, 3, dtype=torch.float64)
    grid = torch.linspace(0.0, 6.0, 13, dtype=torch.float64)
    ref = torchdiffeq.odeint(lambda t, z: field(z), z0, grid, rtol=1e-10, atol=1e-12, method="dopri5").transpose(0, 1)
    tq = grid[1:].repeat(B, 1)
    z = Dopri5Solver(MLP(), rtol=1e-10, atol=1e-12)(z0, torch.zeros(B, dtype=torch.float64), tq, no_doses(B),
                                                    no_static(B))
    assert (z - ref[:, 1:]).abs().max() < 1e-8


def test_gradcheck():
    torch.manual_seed(1)
    t0 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    tq = torch.tensor([[-0.6, 0.5, 1.0], [0.2, 1.7, 1.0]], dtype=torch.float64)
    z0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    s = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    solver = Dopri5Solver(Linear(DAMPED), rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(lambda z, ss: solver(z, t0, tq, no_doses(2), ss), (z0, s))


@pytest.mark.slow
def test_gradcheck_field_parameters():
    t0 = torch.tensor([0.0, 1.0], dtype=torch.float64)
    tq = torch.tensor([[-0.6, 0.5, 1.0], [0.2, 1.7, 1.0]], dtype=torch.float64)
    z0 = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda A: _solve_with_A(A, z0, t0, tq), (DAMPED.clone().requires_grad_(True),))


def _solve_with_A(A, z0, t0, tq):
    f = Linear(torch.zeros(3, 3, dtype=torch.float64))
    del f.A
    f.A = A
    return Dopri5Solver(f, rtol=1e-9, atol=1e-9)(z0, t0, tq, no_doses(2), no_static(2, 3))


def test_nan_field_raises_naming_rows_in_both_directions():
    s = torch.tensor([[0.0], [1.0], [0.0], [1.0]], dtype=torch.float64)
    tq = torch.tensor([[2.0, -1.0]] * 4, dtype=torch.float64)
    with pytest.raises(SolverError, match=r"non-finite.*rows \[1, 3\].*learning rate.*fixed-step") as info:
        Dopri5Solver(NaNRows())(torch.ones(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), tq,
                                no_doses(4), s)
    assert info.value.rows == [1, 3]


def test_blowup_is_reported_not_returned():
    z0 = torch.tensor([[1.0], [0.1]], dtype=torch.float64)  # row 0 blows up at t = 1, row 1 at t = 10
    tq = torch.tensor([[2.0], [2.0]], dtype=torch.float64)
    solver = Dopri5Solver(Blowup(), max_steps=5000)
    _, status, _ = solver.solve(z0, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), tq,
                                no_doses(2), no_static(2))
    assert status[0].item() in (Status.UNDERFLOW.value, Status.NONFINITE.value)
    assert status[1].item() == Status.SUCCESS.value
    with pytest.raises(SolverError, match=r"rows \[0\]"):
        solver(z0, torch.zeros(2, dtype=torch.float64), tq, no_doses(2), no_static(2))


def test_max_steps_exceeded():
    z0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    tq = torch.tensor([[50.0]], dtype=torch.float64)
    with pytest.raises(SolverError, match=r"max_steps exceeded in batch rows \[0\]"):
        Dopri5Solver(Linear(OSCILLATOR), rtol=1e-8, atol=1e-8, max_steps=10)(
            z0, torch.zeros(1, dtype=torch.float64), tq, no_doses(1), no_static(1, 2))


def test_first_step_and_float32():
    z0 = torch.tensor([[1.0, 0.0]])
    tq = torch.tensor([[-2.0, 3.0]])
    f32 = Linear(OSCILLATOR.float())
    z = Dopri5Solver(f32, first_step=0.01)(z0, torch.zeros(1), tq, torch.zeros(1, 1, 4), torch.zeros(1, 2))
    assert z.dtype == torch.float32
    assert (z.double() - linear_exact(OSCILLATOR, z0.double(), torch.zeros(1, dtype=torch.float64), tq.double())).abs().max() < 1e-4


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="max_steps"):
        Dopri5Solver(Linear(OSCILLATOR), max_steps=0)
    with pytest.raises(ConfigError, match="rtol"):
        Dopri5Solver(Linear(OSCILLATOR), rtol=-1.0)

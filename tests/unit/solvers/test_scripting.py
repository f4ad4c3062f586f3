import pytest
import torch
from torch import Tensor, nn

from twinode.models.dynamics import MLPField
from twinode.solvers import Dopri5Solver, FixedGridSolver


class Head(nn.Module):
    """A module holding a solver and its field, as the twin does."""

    def __init__(self, solver: nn.Module):
        super().__init__()
        self.solver = solver

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.solver(z0, t0, tq, doses, s)


def _inputs():
    g = torch.Generator().manual_seed(0)
    B, L = 4, 6
    z0 = torch.randn(B, L, generator=g)
    t0 = torch.tensor([3.0, 10.0, 0.5, 24.0])
    tq = t0.unsqueeze(1) + torch.tensor([[-3.0, -0.5, 0.0, 1.0, 6.0, 12.0]]) * torch.rand(B, 1, generator=g)
    doses = torch.tensor([[[1.0, 0.0, 2.0, 0.0], [4.0, 1.0, 1.0, 2.0]]]).repeat(B, 1, 1)
    s = torch.randn(B, 3, generator=g)
    return z0, t0, tq, doses, s


@pytest.mark.parametrize("make", [
    lambda f: FixedGridSolver(f, "euler", 0.5),
    lambda f: FixedGridSolver(f, "midpoint", 0.5),
    lambda f: FixedGridSolver(f, "rk4", 0.5),
    lambda f: Dopri5Solver(f, rtol=1e-6, atol=1e-7),
], ids=["euler", "midpoint", "rk4", "dopri5"])
def test_scripted_equals_eager(make):
    torch.manual_seed(0)
    field = MLPField(latent_dim=6, n_interventions=2, static_dim=3, hidden=16)
    nn.init.normal_(field.out.weight, std=0.3)  # make the dynamics non-trivial
    model = Head(make(field))
    scripted = torch.jit.script(model)
    args = _inputs()
    eager = model(*args)
    assert (eager - args[0].unsqueeze(1)).abs().max() > 1e-2
    assert torch.allclose(scripted(*args), eager, rtol=0, atol=1e-6)


def test_scripted_failure_names_rows():
    class NaNRow(nn.Module):
        def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
            return torch.where((s[:, :1] > 0), torch.full_like(z, float("nan")), -z)

    scripted = torch.jit.script(Head(Dopri5Solver(NaNRow())))
    s = torch.tensor([[0.0], [0.0], [1.0]])
    with pytest.raises(Exception, match=r"rows \[2\].*learning rate"):
        scripted(torch.ones(3, 2), torch.zeros(3), torch.full((3, 1), 1.0), torch.zeros(3, 1, 4), s)

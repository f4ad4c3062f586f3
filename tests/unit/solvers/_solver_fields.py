"""Tiny vector fields with the solver field signature ``(t, z, doses, s)`` and exact solutions."""

import torch
from torch import Tensor, nn


class Linear(nn.Module):
    """dz/dt = A z + s; with s = 0 the solution is expm(A (t - t0)) z0."""

    def __init__(self, A: Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return z @ self.A.T + s


class CosGrowth(nn.Module):
    """dz/dt = cos(t) z: non-autonomous, so each row's anchor matters. z = z0 exp(sin t - sin t0)."""

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return torch.cos(t).unsqueeze(1) * z


def cos_growth_exact(z0: Tensor, t0: Tensor, tq: Tensor) -> Tensor:
    return z0.unsqueeze(1) * torch.exp(torch.sin(tq) - torch.sin(t0).unsqueeze(1)).unsqueeze(-1)


def linear_exact(A: Tensor, z0: Tensor, t0: Tensor, tq: Tensor) -> Tensor:
    rel = tq - t0.unsqueeze(1)
    return torch.einsum("bqij,bj->bqi", torch.linalg.matrix_exp(A * rel[..., None, None]), z0)


class NaNRows(nn.Module):
    """Finite decay except on rows whose s[:, 0] > 0, which return NaN."""

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        bad = (s[:, 0] > 0).unsqueeze(1)
        return torch.where(bad, torch.full_like(z, float("nan")), -z)


class Blowup(nn.Module):
    """dz/dt = z^2: from z0 = 1 the solution 1/(1 - t) leaves every bound at t = 1."""

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return z * z


OSCILLATOR = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
DAMPED = torch.tensor([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.5]], dtype=torch.float64)


def no_doses(B: int) -> Tensor:
    return torch.zeros(B, 1, 4, dtype=torch.float64)


def no_static(B: int, L: int = 0) -> Tensor:
    return torch.zeros(B, L, dtype=torch.float64)

"""Observation models p(x | z)."""


import math

import torch
from torch import Tensor, nn


class GaussianDecoder(nn.Module):
    """Mean from the latent state; per-variable log-std learned from the state as well,
    floored so the likelihood cannot collapse on a few points."""

    def __init__(self, latent_dim: int, n_measurements: int, hidden: int = 64, min_std: float = 1e-2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_measurements))
        self.n = n_measurements
        self.log_min_std = math.log(min_std)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(z)
        mean, raw = out[..., : self.n], out[..., self.n:]
        log_std = self.log_min_std + torch.nn.functional.softplus(raw - self.log_min_std)
        return mean, log_std


def gaussian_nll(x: Tensor, mask: Tensor, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of masked Gaussian negative log-likelihoods and the count of observed entries."""
    z = (x - mean) * torch.exp(-log_std)
    nll = 0.5 * z * z + log_std + 0.5 * math.log(2 * math.pi)
    return (nll * mask).sum(), mask.sum()

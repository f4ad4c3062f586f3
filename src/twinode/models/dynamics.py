"""Latent vector fields with interventions as inputs.

Interventions act through effect compartments solved in closed form: a bolus of amount
``a`` at ``t_k`` contributes ``a * exp(-k (t - t_k))`` for ``t >= t_k``; an infusion of
``a`` over ``d`` hours contributes the exact integral of its rate ``a/d`` through the same
first-order compartment. The elimination rate ``k`` per channel is learned, starting from
the FeatureSpec's half-life. Closed form means the effect is exact at any time, for any
solver, without extra states.
"""


import math

from typing import List, Optional

import torch
from torch import Tensor, nn


class DoseEffect(nn.Module):
    """u(t) [B, C] from dose rows ``[B, M, 4] = (time_h, channel, amount, duration_h)``."""

    def __init__(self, n_channels: int, half_life_h: Optional[List[float]] = None, learn: bool = True):
        super().__init__()
        self.n_channels = n_channels
        hl = torch.tensor(half_life_h if half_life_h else [2.0] * n_channels, dtype=torch.float32)
        if hl.numel() != n_channels:
            raise ValueError(f"half_life_h has {hl.numel()} entries for {n_channels} intervention channels")
        log_k = torch.log(math.log(2.0) / hl.clamp(min=1e-3))
        self.log_k = nn.Parameter(log_k, requires_grad=learn)

    def forward(self, t: Tensor, doses: Tensor) -> Tensor:
        if self.n_channels == 0:
            return torch.zeros(t.shape[0], 0, dtype=t.dtype, device=t.device)
        ch = doses[..., 1].long().clamp(0, self.n_channels - 1)
        k = torch.exp(self.log_k)[ch]  # [B, M]
        t_k, amount, dur = doses[..., 0], doses[..., 2], doses[..., 3]
        since = (t.unsqueeze(1) - t_k).clamp(min=0.0)
        started = (t.unsqueeze(1) >= t_k).to(t.dtype)
        bolus = amount * torch.exp(-k * since)
        # Infusion: rate a/d over [t_k, t_k + d]; exact first-order compartment response.
        safe_d = dur.clamp(min=1e-6)
        on = torch.minimum(since, dur)
        infusion = amount / safe_d / k * (1.0 - torch.exp(-k * on)) * torch.exp(-k * (since - on))
        eff = torch.where(dur > 0, infusion, bolus) * started  # [B, M]
        onehot = torch.nn.functional.one_hot(ch, self.n_channels).to(eff.dtype)
        return (eff.unsqueeze(-1) * onehot).sum(1)


class MLPField(nn.Module):
    """dz/dt = MLP([z, u(t), s]) with a tanh body; small output init keeps early solves tame."""

    def __init__(self, latent_dim: int, n_interventions: int, static_dim: int, hidden: int = 64, layers: int = 2,
                 half_life_h: Optional[List[float]] = None):
        super().__init__()
        self.dose_effect = DoseEffect(n_interventions, half_life_h)
        dims = [latent_dim + n_interventions + static_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            body += [nn.Linear(a, b), nn.Tanh()]
        out = nn.Linear(dims[-1], latent_dim)
        nn.init.normal_(out.weight, std=1e-2)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*body, out)
        # A direct linear path from the dose effect: gives the dose response a gradient from
        # the first step, while the MLP learns its nonlinear part.
        self.control = nn.Linear(n_interventions, latent_dim, bias=False)

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.given_effect(z, self.dose_effect(t, doses), s)

    def given_effect(self, z: Tensor, u: Tensor, s: Tensor) -> Tensor:
        """The field for an already computed dose effect ``u [B, C]`` (shared with a hybrid prior)."""
        return self.net(torch.cat([z, u, s], dim=-1)) + self.control(u)


class HybridField(nn.Module):
    """dz/dt = mechanistic(t, z, u(t), s) + residual(z, u(t), s).

    ``mechanistic`` is any scriptable module with
    ``forward(t[B], z[B,L], u[B,C], s[B,E]) -> [B,L]``, where ``u`` is the dose effect of the
    residual's :class:`DoseEffect` (one effect compartment per intervention channel, so both
    terms see the same drug exposure). The neural residual learns what the prior misses.
    """

    def __init__(self, mechanistic: nn.Module, residual: MLPField):
        super().__init__()
        self.mechanistic = mechanistic
        self.residual = residual

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        u = self.residual.dose_effect(t, doses)
        return self.mechanistic(t, z, u, s) + self.residual.given_effect(z, u, s)

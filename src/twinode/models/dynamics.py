"""Latent vector fields with interventions as inputs.

Interventions act through effect compartments solved in closed form: a bolus of amount
``a`` at ``t_k`` contributes ``a * exp(-k (t - t_k))`` for ``t >= t_k``; an infusion of
``a`` over ``d`` hours contributes the exact integral of its rate ``a/d`` through the same
first-order compartment. The elimination rate ``k`` per channel is learned, starting from
the FeatureSpec's half-life. Closed form means the effect is exact at any time, for any
solver, without extra states.
"""


import math

from typing import Final, List, Optional

import torch
from torch import Tensor, nn


class DoseEffect(nn.Module):
    """u(t) from dose rows ``[B, M, 4] = (time_h, channel, amount, duration_h)``: ``[B, C]`` at
    times ``t [B]``, or ``[B, K, C]`` at ``t [B, K]`` (every stage time of a grid at once)."""

    def __init__(self, n_channels: int, half_life_h: Optional[List[float]] = None, learn: bool = True):
        super().__init__()
        self.n_channels = n_channels
        hl = torch.tensor(half_life_h if half_life_h else [2.0] * n_channels, dtype=torch.float32)
        if hl.numel() != n_channels:
            raise ValueError(f"half_life_h has {hl.numel()} entries for {n_channels} intervention channels")
        log_k = torch.log(math.log(2.0) / hl.clamp(min=1e-3))
        self.log_k = nn.Parameter(log_k, requires_grad=learn)

    def forward(self, t: Tensor, doses: Tensor) -> Tensor:
        if t.dim() == 1:
            return self.at_times(t.unsqueeze(1), doses).squeeze(1)
        return self.at_times(t, doses)

    def at_times(self, t: Tensor, doses: Tensor) -> Tensor:
        if self.n_channels == 0:
            return torch.zeros(t.shape[0], t.shape[1], 0, dtype=t.dtype, device=t.device)
        ch = doses[..., 1].long().clamp(0, self.n_channels - 1)
        k = torch.exp(self.log_k)[ch].unsqueeze(1)  # [B, 1, M]
        t_k, amount, dur = doses[..., 0].unsqueeze(1), doses[..., 2].unsqueeze(1), doses[..., 3].unsqueeze(1)
        since = (t.unsqueeze(-1) - t_k).clamp(min=0.0)  # [B, K, M]
        started = (t.unsqueeze(-1) >= t_k).to(t.dtype)
        bolus = amount * torch.exp(-k * since)
        # Infusion: rate a/d over [t_k, t_k + d]; exact first-order compartment response.
        safe_d = dur.clamp(min=1e-6)
        on = torch.minimum(since, dur)
        infusion = amount / safe_d / k * (1.0 - torch.exp(-k * on)) * torch.exp(-k * (since - on))
        eff = torch.where(dur > 0, infusion, bolus) * started  # [B, K, M]
        onehot = torch.nn.functional.one_hot(ch, self.n_channels).to(eff.dtype)  # [B, M, C]
        return torch.bmm(eff, onehot)


class MLPField(nn.Module):
    """dz/dt = MLP([z, u(t), s]) + control(u(t)) with a tanh body; small output init keeps early
    solves tame.

    Everything that does not depend on z (the dose effect u(t), the statics' share of the first
    layer, the control path, the output bias) is the field's *drive*: a solver that knows its
    stage times ahead (a fixed grid) computes the drive for all of them in one batched call,
    and each evaluation inside the time loop is then two matmul-adds and a matmul
    (:meth:`given_drive`, which takes the doses only for the common signature of fields).
    ``forward`` is the same arithmetic at one time per subject.
    """

    latent_dim: Final[int]
    hidden: Final[int]

    def __init__(self, latent_dim: int, n_interventions: int, static_dim: int, hidden: int = 64, layers: int = 2,
                 half_life_h: Optional[List[float]] = None):
        super().__init__()
        if layers < 1:
            raise ValueError(f"MLPField needs at least one hidden layer, got layers={layers}")
        self.latent_dim, self.hidden = latent_dim, hidden
        self.dose_effect = DoseEffect(n_interventions, half_life_h)
        self.first = nn.Linear(latent_dim + n_interventions + static_dim, hidden)
        body: list[nn.Module] = [nn.Tanh()]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden), nn.Tanh()]
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(hidden, latent_dim)
        nn.init.normal_(self.out.weight, std=1e-2)
        nn.init.zeros_(self.out.bias)
        # A direct linear path from the dose effect: gives the dose response a gradient from
        # the first step, while the MLP learns its nonlinear part.
        self.control = nn.Linear(n_interventions, latent_dim, bias=False)

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.given_drive(t, z, self.drive(t.unsqueeze(1), doses, s).squeeze(1), doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """The z-independent inputs at times ``t [B, K]`` -> ``[B, K, hidden + latent]``."""
        return self.drive_from_effect(self.dose_effect(t, doses), s)

    def drive_from_effect(self, u: Tensor, s: Tensor) -> Tensor:
        """Drive for an already computed dose effect ``u [B, K, C]`` (shared with a hybrid prior)."""
        us = torch.cat([u, s.unsqueeze(1).expand(u.shape[0], u.shape[1], s.shape[1])], dim=-1)
        pre = torch.nn.functional.linear(us, self.first.weight[:, self.latent_dim:], self.first.bias)
        ctrl = self.control(u) + self.out.bias
        return torch.cat([pre, ctrl], dim=-1)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """dz/dt at states ``z [B, L]`` with the drive ``[B, hidden + latent]`` at their time."""
        H = self.hidden
        h = self.body(torch.addmm(drive[:, :H], z, self.first.weight[:, : self.latent_dim].t()))
        return torch.addmm(drive[:, H:], h, self.out.weight.t())


class HybridField(nn.Module):
    """dz/dt = mechanistic(t, z, u(t), s) + residual(z, u(t), s).

    ``mechanistic`` is any scriptable module with
    ``forward(t[B], z[B,L], u[B,C], s[B,E]) -> [B,L]``, where ``u`` is the dose effect of the
    residual's :class:`DoseEffect` (one effect compartment per intervention channel, so both
    terms see the same drug exposure). The neural residual learns what the prior misses.
    The drive is ``[u, residual drive]``, so a fixed grid precomputes both.
    """

    n_interventions: Final[int]

    def __init__(self, mechanistic: nn.Module, residual: MLPField):
        super().__init__()
        self.mechanistic = mechanistic
        self.residual = residual
        self.n_interventions = residual.dose_effect.n_channels

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.given_drive(t, z, self.drive(t.unsqueeze(1), doses, s).squeeze(1), doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        u = self.residual.dose_effect(t, doses)
        return torch.cat([u, self.residual.drive_from_effect(u, s)], dim=-1)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        C = self.n_interventions
        return self.mechanistic(t, z, drive[:, :C], s) + self.residual.given_drive(t, z, drive[:, C:], doses, s)


class DrivenField(nn.Module):
    """The drive interface for a field that only has ``forward(t, z, doses, s)``: no drive,
    every evaluation calls the field (a user's own field works with every solver)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.field(t, z, doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return torch.zeros(t.shape[0], t.shape[1], 0, dtype=t.dtype, device=t.device)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.field(t, z, doses, s)

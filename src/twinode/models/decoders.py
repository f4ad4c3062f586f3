"""Observation models p(x | z)."""


import math

from typing import Tuple

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


class AnchoredDecoder(nn.Module):
    """Observation-anchored decoding: each channel is an Ornstein-Uhlenbeck process around a
    subject level, conditioned on the channel's own observations around the query, plus a
    deviation the latent path adds where the observations say little.

    Per channel ``d`` (normalised units), with rate ``k``, process scale ``sp`` and level ``mu``
    inferred from the anchor state ``z_a``:

    * forward from the last value ``v_p`` seen ``age`` hours before the query:
      ``mu + (v_p - mu) r``, variance ``sp^2 (1 - r^2)``, ``r = exp(-k age)``;
    * conditioned also on the next value ``v_n`` ``gap`` hours after it (queries inside the
      history), the exact OU bridge, combined in precision form so nothing overflows;
    * a channel never seen: ``mu``, variance ``sp^2``.

    The latent path ``z(t)`` adds ``g * dev(z(t))`` with ``g = sqrt(var_ou) / sp`` (0 at an
    observation, 1 far from any), and scales the spread by ``exp(tanh(.))``. The variance
    adds the channel's measurement noise ``sn^2``. At the time of an observation the mean is
    the observation and the spread the learned noise; far from one, the dynamics take over.
    """

    def __init__(self, latent_dim: int, n_measurements: int, hidden: int = 64, min_std: float = 1e-2,
                 rate_per_h: float = 0.1):
        super().__init__()
        D = n_measurements
        self.n = D
        self.log_min_std = math.log(min_std)
        self.log_k = nn.Parameter(torch.full([D], math.log(rate_per_h)))
        self.log_sp = nn.Parameter(torch.zeros(D))
        self.log_sn = nn.Parameter(torch.full([D], math.log(0.3)))
        # Bayesian shrinkage of the history mean toward the population mean (0): n / (n + n0).
        self.raw_n0 = nn.Parameter(torch.zeros(D))
        self.subject = nn.Linear(latent_dim + 3 * D, 3 * D)
        nn.init.zeros_(self.subject.weight)
        nn.init.zeros_(self.subject.bias)
        out = nn.Linear(hidden, 2 * D)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.deviation = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), out)

    def subject_params(self, z_a: Tensor, h_mean: Tensor, h_cnt: Tensor, last: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Level, rate and process scale ``[B, D]`` of each channel for this subject."""
        seen = (h_cnt > 0).to(h_mean.dtype)
        feats = torch.cat([z_a, h_mean, last, torch.log1p(h_cnt)], dim=-1)
        adj = self.subject(feats)
        d_level, d_logk, d_logsp = adj[:, : self.n], adj[:, self.n: 2 * self.n], adj[:, 2 * self.n:]
        n0 = torch.nn.functional.softplus(self.raw_n0) + 1e-3
        level = h_mean * seen * h_cnt / (h_cnt + n0) + d_level
        k = torch.exp((self.log_k + d_logk).clamp(-9.0, 3.0))
        sp = torch.exp((self.log_sp + d_logsp).clamp(-4.0, 3.0))
        return level, k, sp

    def forward(self, zq: Tensor, level: Tensor, k: Tensor, sp: Tensor, prev_val: Tensor, prev_age: Tensor,
                prev_ok: Tensor, next_val: Tensor, next_gap: Tensor, next_ok: Tensor) -> Tuple[Tensor, Tensor]:
        """Mean and log-std ``[B, Q, D]`` from latent states ``zq [B, Q, L]`` and the anchors."""
        mu, kk, var_p = level.unsqueeze(1), k.unsqueeze(1), (sp * sp).unsqueeze(1)
        eps = 1e-6
        r_f = torch.exp(-kk * prev_age) * prev_ok
        var_f = (var_p * (1.0 - r_f * r_f)).clamp(min=eps * var_p)
        mean_f = mu + (prev_val - mu) * r_f
        # Backward pseudo-observation of x(t) from the next value, in precision form.
        r_b = torch.exp(-kk * next_gap) * next_ok
        denom = (var_p * (1.0 - r_b * r_b)).clamp(min=eps * var_p)
        prec = 1.0 / var_f + r_b * r_b / denom
        mean_ou = (mean_f / var_f + (r_b * r_b * mu + r_b * (next_val - mu)) / denom) / prec
        var_ou = 1.0 / prec
        out = self.deviation(zq)
        dev, scale = out[..., : self.n], out[..., self.n:]
        gate = torch.sqrt((var_ou / var_p).clamp(min=0.0, max=1.0))
        mean = mean_ou + gate * dev
        sn = torch.exp(self.log_sn)
        var = (var_ou + sn * sn) * torch.exp(2.0 * torch.tanh(scale))
        log_std = 0.5 * torch.log(var)
        return mean, log_std.clamp(min=self.log_min_std)

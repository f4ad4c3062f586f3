"""Per-sample machinery for adaptive Runge-Kutta: error norm, step-size control, first step,
and the quartic dense output. Every function works row-wise on a batch, so each subject keeps
its own step size; step-size decisions are detached (gradients flow through the states only).
"""

import torch
from torch import Tensor


def rms_ratio(err: Tensor, z0: Tensor, z1: Tensor, rtol: float, atol: float) -> Tensor:
    """Per-row RMS of ``err`` in units of the tolerance ``atol + rtol*max(|z0|, |z1|)`` -> [B]."""
    scale = atol + rtol * torch.maximum(z0.abs(), z1.abs())
    return (err / scale).pow(2).mean(1).sqrt()


def next_step(h: Tensor, ratio: Tensor, order: int) -> Tensor:
    """Controller ``h * 0.9 * ratio^(-1/order)``, growing at most 10x and shrinking at most 5x
    per step (torchdiffeq's constants); an accepted step never shrinks h, a non-finite ratio
    shrinks it 5x."""
    ratio = ratio.detach()
    factor = 0.9 * ratio.clamp(min=1e-10).pow(-1.0 / order)
    low = torch.where(ratio <= 1.0, torch.ones_like(factor), torch.full_like(factor, 0.2))
    factor = torch.minimum(torch.maximum(factor, low), torch.full_like(factor, 10.0))
    factor = torch.where(torch.isfinite(ratio), factor, torch.full_like(factor, 0.2))
    return h * factor


def rms(x: Tensor) -> Tensor:
    return x.pow(2).mean(1).sqrt()


def initial_step(z0: Tensor, f0: Tensor, z1: Tensor, f1: Tensor, h0: Tensor, rtol: float, atol: float,
                 order: int) -> Tensor:
    """Second half of Hairer, Norsett & Wanner's starting-step rule (Sec. II.4), per row.

    ``h0`` comes from :func:`trial_step`; ``(z1, f1)`` is one Euler probe of length ``h0``.
    """
    scale = atol + rtol * z0.abs()
    d1 = rms(f0 / scale)
    d2 = rms((f1 - f0) / scale) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / dmax.clamp(min=1e-300)).pow(1.0 / (order + 1)))
    return torch.minimum(100.0 * h0, h1).detach()


def trial_step(z0: Tensor, f0: Tensor, rtol: float, atol: float) -> Tensor:
    """First half of the starting-step rule: ``0.01 * |z0| / |f0|`` in tolerance units, per row."""
    scale = atol + rtol * z0.abs()
    d0 = rms(z0 / scale)
    d1 = rms(f0 / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    return torch.where(small, torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp(min=1e-300)).detach()


def quartic(z0: Tensor, z1: Tensor, zmid: Tensor, f0: Tensor, f1: Tensor, h: Tensor, theta: Tensor) -> Tensor:
    """4th-order dense output through ``z0, zmid, z1`` with end slopes ``f0, f1``.

    ``z*, f* [B, L]``, ``h [B]``, ``theta [B, Q]`` in [0, 1] -> ``[B, Q, L]``.
    """
    hh = h.unsqueeze(1)
    a = 2.0 * hh * (f1 - f0) - 8.0 * (z1 + z0) + 16.0 * zmid
    b = hh * (5.0 * f0 - 3.0 * f1) + 18.0 * z0 + 14.0 * z1 - 32.0 * zmid
    c = hh * (f1 - 4.0 * f0) - 11.0 * z0 - 5.0 * z1 + 16.0 * zmid
    d = hh * f0
    x = theta.unsqueeze(-1)
    return z0.unsqueeze(1) + x * (d.unsqueeze(1) + x * (c.unsqueeze(1) + x * (b.unsqueeze(1) + x * a.unsqueeze(1))))

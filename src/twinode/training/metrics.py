"""Forecast metrics on padded, masked batches (normalised units)."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_abs_error(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of |pred - target| over observed entries, and their count."""
    return ((pred - target).abs() * mask).sum(), mask.sum()


def masked_sq_error(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of (pred - target)^2 over observed entries, and their count."""
    return ((pred - target).pow(2) * mask).sum(), mask.sum()


def interval_hits(mean: Tensor, log_std: Tensor, target: Tensor, mask: Tensor, z: float = 1.6448536) -> Tensor:
    """Observed entries inside the central Gaussian interval (z = 1.645: 90 %)."""
    return (((target - mean).abs() <= z * torch.exp(log_std)).to(mask.dtype) * mask).sum()


class MinMaxScale:
    """The Latent ODE paper's protocol: each channel in original units, min-max scaled to
    [0, 1] with the train split's observed range. Inputs are normalised (z-scored, after
    log1p where the FeatureSpec says so) and mapped back first; predictions are clipped to
    the train range so one wild ``expm1`` cannot dominate the mean."""

    def __init__(self, mean: Tensor, std: Tensor, log1p: Tensor, lo: Tensor, hi: Tensor):
        self.mean, self.std, self.log1p = mean, std, log1p
        # A channel with one value in training (PhysioNet's MechVent is always 1) has no span:
        # clipping to [lo, hi] scores every prediction there as exact, where a prediction a
        # millionth above the value used to count as most of a unit.
        self.lo, self.hi, self.span = lo, torch.maximum(hi, lo), (hi - lo).clamp(min=1e-6)

    @classmethod
    def fit(cls, values: Tensor, mask: Tensor, mean: Tensor, std: Tensor, log1p: Tensor) -> "MinMaxScale":
        """Range per channel from normalised train ``values [N, D]`` observed where ``mask``."""
        scale = cls(mean, std, log1p, torch.zeros_like(mean), torch.ones_like(mean))
        raw = scale.original(values)
        big = torch.finfo(raw.dtype).max
        lo = torch.where(mask > 0, raw, torch.full_like(raw, big)).min(0).values
        hi = torch.where(mask > 0, raw, torch.full_like(raw, -big)).max(0).values
        seen = mask.sum(0) > 0
        return cls(mean, std, log1p, torch.where(seen, lo, 0.0), torch.where(seen, hi, 1.0))

    @classmethod
    def from_records(cls, records, spec, normaliser) -> "MinMaxScale":
        """Range per channel over normalised subject ``records``' observed values, with the
        normalisation (``normaliser.meas_mean``/``meas_std``) and log1p channels of ``spec``."""
        import numpy as np

        values = torch.from_numpy(np.concatenate([r.values for r in records]))
        mask = torch.from_numpy(np.concatenate([r.mask for r in records]))
        log1p = torch.tensor([f.transform == "log1p" for f in spec.measurements])
        return cls.fit(values, mask, torch.from_numpy(normaliser.meas_mean), torch.from_numpy(normaliser.meas_std),
                       log1p)

    def original(self, x: Tensor) -> Tensor:
        y = x * self.std + self.mean
        return torch.where(self.log1p, torch.expm1(y.clamp(max=30.0)), y)

    def __call__(self, x: Tensor, clip: bool = False) -> Tensor:
        raw = self.original(x)
        if clip:
            raw = torch.minimum(torch.maximum(raw, self.lo), self.hi)
        return (raw - self.lo) / self.span

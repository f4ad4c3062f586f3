"""Forecast metrics on padded, masked batches (normalised units)."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_abs_error(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of |pred - target| over observed entries, and their count."""
    return ((pred - target).abs() * mask).sum(), mask.sum()


def locf_forecast(hist_x: Tensor, hist_m: Tensor, n_queries: int) -> tuple[Tensor, Tensor]:
    """Last observation carried forward per channel: ``[B, Q, D]`` and where it exists ``[B, Q, D]``.

    A channel never observed in the history has no LOCF value; those entries are left out
    of both the twin's and LOCF's error so the two are compared on the same targets.
    """
    n = hist_x.shape[1]
    pos = torch.arange(1, n + 1, device=hist_x.device, dtype=hist_x.dtype).view(1, n, 1)
    last = (pos * hist_m).argmax(dim=1)  # [B, D] index of the last observed entry
    value = torch.gather(hist_x, 1, last.unsqueeze(1)).squeeze(1)
    seen = (hist_m.sum(1) > 0).to(hist_x.dtype)
    return value.unsqueeze(1).expand(-1, n_queries, -1), seen.unsqueeze(1).expand(-1, n_queries, -1)

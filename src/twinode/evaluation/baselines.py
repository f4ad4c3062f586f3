"""Reference forecasters every twin result stands next to, on the same padded batches.

Each takes the normalised, padded history and the query times ``tq [B, Q]`` and returns a
forecast ``[B, Q, D]`` in normalised units (0 is the train split's mean):

* ``locf``: the channel's last value at or before the query (the first value after it when
  the query precedes every observation of the channel; the population mean if never seen);
* ``history_mean``: the subject's own mean of the channel over the history;
* ``population_mean``: the train mean;
* ``linear_interpolation``: between the channel's observations around the query, carried
  flat past the first and last one;
* ``decay_to_mean``: the last value decaying toward a blend of the subject's history mean and
  the population mean, ``level + (last - level) exp(-k age)``, ``level = w * history mean``,
  with ``w`` and ``k`` per channel fitted on the train split by grid search
  (:meth:`DecayToMean.fit`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor

from twinode.models.anchoring import channel_anchors, history_stats
from twinode.models.channel_prior import fit_channel_decay


class Anchors:
    """The per-query anchors and history statistics every baseline reads, computed once."""

    def __init__(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor, tq: Tensor):
        self.prev, self.age, self.prev_ok, self.next, self.gap, self.next_ok = channel_anchors(
            hist_t, hist_x, hist_m, hist_len, tq)
        mean, cnt = history_stats(hist_x, hist_m, hist_len)
        self.mean = mean.unsqueeze(1).expand_as(self.prev)
        self.seen = (cnt > 0).to(hist_x.dtype).unsqueeze(1).expand_as(self.prev)


def locf(a: Anchors) -> Tensor:
    return torch.where(a.prev_ok > 0, a.prev, torch.where(a.next_ok > 0, a.next, torch.zeros_like(a.prev)))


def history_mean(a: Anchors) -> Tensor:
    return a.mean * a.seen


def population_mean(a: Anchors) -> Tensor:
    return torch.zeros_like(a.prev)


def linear_interpolation(a: Anchors) -> Tensor:
    both = (a.prev_ok > 0) & (a.next_ok > 0)
    w = a.age / (a.age + a.gap).clamp(min=1e-9)
    between = a.prev + (a.next - a.prev) * w
    return torch.where(both, between, locf(a))


class DecayToMean:
    """``level + (last - level) exp(-k age)`` with ``level = w * history mean``, per channel."""

    def __init__(self, w: Tensor, k: Tensor):
        self.w, self.k = w, k

    def __call__(self, a: Anchors) -> Tensor:
        level = self.w * a.mean * a.seen
        decayed = level + (a.prev - level) * torch.exp(-self.k * a.age)
        return torch.where(a.prev_ok > 0, decayed, locf(a))

    @classmethod
    def fit(cls, batches: Iterable, n_channels: int) -> "DecayToMean":
        """Grid search of ``w`` and the half-life per channel, minimising the squared error on
        the targets of ``batches`` (collated windows of the train split)."""
        return cls(*fit_channel_decay(batches, n_channels))


BASELINES: dict[str, Callable[[Anchors], Tensor]] = {
    "locf": locf,
    "history_mean": history_mean,
    "population_mean": population_mean,
    "linear_interpolation": linear_interpolation,
}

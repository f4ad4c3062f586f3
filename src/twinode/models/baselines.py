"""Carry-forward on a padded history (the training module's validation reference) and the
mortality baseline. The forecast baselines of every reported result are in
:mod:`twinode.evaluation.baselines`.

Mortality: :class:`LogisticRisk`, L2-regularised logistic regression on per-channel summary
features of the history (last, mean, min, max, observation count) plus statics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from twinode.models.anchoring import history_extremes, history_stats


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


def summary_features(hist_x: Tensor, hist_m: Tensor, static: Tensor, static_m: Tensor) -> Tensor:
    """``[B, 5 D + 2 S]``: last, mean, min, max and log1p(count) per channel (0 where unseen), statics."""
    full = torch.full((hist_x.shape[0],), hist_x.shape[1], dtype=torch.long, device=hist_x.device)
    locf, seen = locf_forecast(hist_x, hist_m, 1)
    mean, cnt = history_stats(hist_x, hist_m, full)
    lo, hi = history_extremes(hist_x, hist_m, full)
    return torch.cat([(locf * seen)[:, 0], mean, lo, hi, torch.log1p(cnt), static * static_m, static_m], dim=-1)


class LogisticRisk:
    """Logistic regression fitted by L-BFGS on standardised features (float64, deterministic)."""

    def __init__(self, l2: float = 1e-2, max_iter: int = 200):
        self.l2, self.max_iter = l2, max_iter

    def fit(self, features: Tensor, labels: Tensor) -> "LogisticRisk":
        x = features.double()
        self.mu, self.sd = x.mean(0), x.std(0).clamp(min=1e-6)
        x = (x - self.mu) / self.sd
        y = labels.double()
        self.w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
        self.b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([self.w, self.b], max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ self.w + self.b, y)
            loss = loss + self.l2 * self.w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def predict_proba(self, features: Tensor) -> Tensor:
        x = (features.double() - self.mu) / self.sd
        with torch.no_grad():
            return torch.sigmoid(x @ self.w + self.b).float()

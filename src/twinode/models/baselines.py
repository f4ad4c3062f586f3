"""Carry-forward on a padded history (the training module's validation reference) and the
mortality baseline. The forecast baselines of every reported result are in
:mod:`twinode.evaluation.baselines`.

Mortality: :class:`LogisticRisk`, L2-regularised logistic regression (scikit-learn) on
per-channel summary features of the history (last, mean, min, max, observation count) plus statics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from twinode.models.anchoring import history_extremes, history_stats, last_values


def locf_forecast(hist_x: Tensor, hist_m: Tensor, n_queries: int) -> tuple[Tensor, Tensor]:
    """Last observation carried forward per channel: ``[B, Q, D]`` and where it exists ``[B, Q, D]``.

    A channel never observed in the history has no LOCF value; those entries are left out
    of both the twin's and LOCF's error so the two are compared on the same targets.
    """
    B, N = hist_x.shape[:2]
    full = torch.full((B,), N, dtype=torch.long, device=hist_x.device)  # padding is unobserved in the mask
    value, _, seen = last_values(hist_x.new_zeros(B, N), hist_x, hist_m, full)
    return value.unsqueeze(1).expand(-1, n_queries, -1), seen.unsqueeze(1).expand(-1, n_queries, -1)


def summary_features(hist_x: Tensor, hist_m: Tensor, static: Tensor, static_m: Tensor) -> Tensor:
    """``[B, 5 D + 2 S]``: last, mean, min, max and log1p(count) per channel (0 where unseen), statics."""
    full = torch.full((hist_x.shape[0],), hist_x.shape[1], dtype=torch.long, device=hist_x.device)
    locf, seen = locf_forecast(hist_x, hist_m, 1)
    mean, cnt = history_stats(hist_x, hist_m, full)
    lo, hi = history_extremes(hist_x, hist_m, full)
    return torch.cat([(locf * seen)[:, 0], mean, lo, hi, torch.log1p(cnt), static * static_m, static_m], dim=-1)


class LogisticRisk:
    """Logistic regression on standardised features: scikit-learn's ``StandardScaler`` and
    ``LogisticRegression`` (L-BFGS, float64, deterministic). ``l2`` weighs the squared weights
    against the *mean* log-loss, ``mean_loss + l2 * |w|^2``, i.e. scikit-learn's ``C = 1 / (2 n l2)``."""

    def __init__(self, l2: float = 1e-2, max_iter: int = 200):
        self.l2, self.max_iter = l2, max_iter

    def fit(self, features: Tensor, labels: Tensor) -> "LogisticRisk":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = features.detach().double().cpu().numpy()
        y = labels.detach().double().cpu().numpy()
        self.constant = None
        if y.min() == y.max():  # one class: every prediction is its rate
            self.constant = float(y.mean())
            return self
        c = 1.0 / (2.0 * len(y) * self.l2) if self.l2 > 0 else float("inf")
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=self.max_iter)).fit(x, y)
        return self

    def predict_proba(self, features: Tensor) -> Tensor:
        if self.constant is not None:
            return torch.full((features.shape[0],), self.constant, dtype=torch.float32)
        p = self.model.predict_proba(features.detach().double().cpu().numpy())[:, 1]
        return torch.from_numpy(p).float()

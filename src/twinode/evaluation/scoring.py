"""Accumulating forecast errors over held-out batches, and scoring a risk model.

Errors are kept per channel so a result can be reported both ways the literature does:
*per variable* (each channel's MSE over its observed targets, then the mean over channels:
t-PatchGNN's PhysioNet protocol) and *pooled* (one MSE over every observed target).
The min-max scale maps each channel's original units to [0, 1] with the range of the
train and tuning splits' raw values; predictions are clipped to that range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Z90 = 1.6448536
NEGLIGIBLE_MSE = 1e-12  # min-max squared error at or below float rounding: the forecaster is exact there


class ForecastScore:
    """Sums over observed targets of one forecaster on one protocol."""

    def __init__(self, n_channels: int, bucket_h: float = 6.0, n_buckets: int = 8):
        D = n_channels
        self.sq_mm, self.sq, self.abs, self.cnt = (torch.zeros(D, dtype=torch.float64) for _ in range(4))
        self.nll = self.hits = 0.0
        self.has_std = False
        self.bucket_h, self.n_buckets = bucket_h, n_buckets
        self.hits_b = torch.zeros(n_buckets, dtype=torch.float64)
        self.cnt_b = torch.zeros(n_buckets, dtype=torch.float64)
        # Per subject (row) and channel, for intervals that resample subjects.
        self.rows_sq_mm: list[Tensor] = []
        self.rows_cnt: list[Tensor] = []

    def _bucket_label(self, i: int) -> str:
        """The last bucket holds every distance past its start (targets further out land there)."""
        if i == self.n_buckets - 1:
            return f">= {i * self.bucket_h:g} h"
        return f"{i * self.bucket_h:g}-{(i + 1) * self.bucket_h:g} h"

    def update(self, pred: Tensor, target: Tensor, mask: Tensor, scale, log_std: Tensor | None = None,
               distance_h: Tensor | None = None) -> None:
        m = mask.double()
        err = (pred - target).double()
        self.sq += (err.pow(2) * m).sum((0, 1))
        self.abs += (err.abs() * m).sum((0, 1))
        mm = (scale(pred, clip=True) - scale(target)).double()
        rows_sq, rows_cnt = (mm.pow(2) * m).sum(1), m.sum(1)
        self.rows_sq_mm.append(rows_sq)
        self.rows_cnt.append(rows_cnt)
        self.sq_mm += rows_sq.sum(0)
        self.cnt += rows_cnt.sum(0)
        if log_std is not None:
            self.has_std = True
            z = err * torch.exp(-log_std.double())
            self.nll += float(((0.5 * z * z + log_std.double() + 0.5 * math.log(2 * math.pi)) * m).sum())
            hit = (z.abs() <= Z90).double() * m
            self.hits += float(hit.sum())
            if distance_h is not None:
                bucket = (distance_h / self.bucket_h).floor().clamp(0, self.n_buckets - 1).long()
                bucket = bucket.unsqueeze(-1).expand_as(hit)
                self.hits_b.index_add_(0, bucket.flatten(), hit.flatten())
                self.cnt_b.index_add_(0, bucket.flatten(), m.flatten())

    def _stay_spread(self) -> tuple[Tensor, Tensor]:
        """Per channel: how many subjects hold its targets, and the largest share of the summed
        min-max squared error one of them carries (0 where the error is negligible). A
        per-variable MSE that one or two stays carry says more about them than about the channel."""
        D = self.sq_mm.shape[0]
        if not self.rows_sq_mm:
            return torch.zeros(D), torch.zeros(D)
        sq, cnt = torch.cat(self.rows_sq_mm), torch.cat(self.rows_cnt)
        stays = (cnt > 0).sum(0)
        total = sq.sum(0)
        share = torch.where(total > NEGLIGIBLE_MSE * cnt.sum(0).clamp(min=1.0), sq.max(0).values / total.clamp(min=1e-300),
                            torch.zeros_like(total))
        return stays, share

    def result(self, names: list[str]) -> dict:
        cnt = self.cnt.clamp(min=1.0)
        present = self.cnt > 0
        per_mm = self.sq_mm / cnt
        total = float(self.cnt.sum())
        stays, top_share = self._stay_spread()
        out = {
            "mse_minmax_per_variable": float(per_mm[present].mean()) if bool(present.any()) else float("nan"),
            "mse_minmax_pooled": float(self.sq_mm.sum() / max(total, 1.0)),
            "mse_norm": float(self.sq.sum() / max(total, 1.0)),
            "mae_norm": float(self.abs.sum() / max(total, 1.0)),
            "n_targets": total,
            "per_variable": {name: {"mse_minmax": float(per_mm[i]), "n": float(self.cnt[i]), "stays": int(stays[i]),
                                    "top_stay_share": float(top_share[i])} for i, name in enumerate(names)},
        }
        if self.has_std:
            out["nll"] = self.nll / max(total, 1.0)
            cov = self.hits_b / self.cnt_b.clamp(min=1.0)
            out["coverage90"] = self.hits / max(total, 1.0)
            out["coverage90_by_bucket"] = {
                self._bucket_label(i): {"coverage": float(cov[i]), "n": float(self.cnt_b[i])}
                for i in range(self.n_buckets) if self.cnt_b[i] > 0}
        return out




def ratio_intervals(num: ForecastScore, den: ForecastScore, n_boot: int = 1000, seed: int = 0) -> dict:
    """95 % intervals of ``num``'s min-max MSE over ``den``'s (both scored on the same targets),
    per variable and pooled, resampling subjects with replacement: how much of a ratio a
    different draw of held-out subjects could move (a channel with a handful of targets moves
    the per-variable mean most)."""
    a_sq, b_sq = torch.cat(num.rows_sq_mm), torch.cat(den.rows_sq_mm)
    cnt = torch.cat(num.rows_cnt)
    # A reference that reproduces its targets (LOCF or decay-to-mean at the history's own
    # points) leaves rounding error alone: a ratio to it is noise, not a figure.
    if a_sq.shape[0] == 0 or float(b_sq.sum()) <= NEGLIGIBLE_MSE * float(cnt.sum()):
        return {}
    gen = torch.Generator().manual_seed(seed)
    per_var, pooled = [], []
    for _ in range(n_boot):
        idx = torch.randint(0, a_sq.shape[0], (a_sq.shape[0],), generator=gen)
        c, sa, sb = cnt[idx].sum(0), a_sq[idx].sum(0), b_sq[idx].sum(0)
        seen = c > 0
        if not bool(seen.any()) or float(sb.sum()) == 0.0:
            continue
        pa, pb = (sa / c.clamp(min=1.0))[seen].mean(), (sb / c.clamp(min=1.0))[seen].mean()
        per_var.append(float(pa / pb) if float(pb) > 0 else float("nan"))
        pooled.append(float(sa.sum() / sb.sum()))
    q = lambda v: [float(torch.tensor(v).nanquantile(0.025)), float(torch.tensor(v).nanquantile(0.975))]
    return {"per_variable_ci95": q(per_var), "pooled_ci95": q(pooled), "resamples": len(pooled)} if pooled else {}


def risk_scores(y: Tensor, p: Tensor, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUROC and AUPRC with the number of positives and 95 % bootstrap intervals."""
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    y = y.long()
    pos = int(y.sum())
    if y.numel() == 0 or pos == 0 or pos == y.numel():
        return {"n": int(y.numel()), "positives": pos}
    out = {"auroc": float(binary_auroc(p, y)), "auprc": float(binary_average_precision(p, y)),
           "n": int(y.numel()), "positives": pos}
    gen = torch.Generator().manual_seed(seed)
    aurocs, auprcs = [], []
    for _ in range(n_boot):
        idx = torch.randint(0, y.numel(), (y.numel(),), generator=gen)
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        aurocs.append(float(binary_auroc(p[idx], yb)))
        auprcs.append(float(binary_average_precision(p[idx], yb)))
    if aurocs:
        q = lambda v: [float(torch.tensor(v).quantile(0.025)), float(torch.tensor(v).quantile(0.975))]
        out["auroc_ci95"], out["auprc_ci95"] = q(aurocs), q(auprcs)
    return out

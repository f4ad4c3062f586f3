"""Early warning: probability of a named event within a horizon, its calibration and lead time.

An event is "channel ``name`` below (or above) ``threshold`` at some time in (now, now +
horizon]", e.g. hypoglycaemia: CGM < 70 mg/dL within 60 min. The twin's probability is the
share of its sampled trajectories (``twin.sample``: latent draws and decoder noise) that
cross the threshold on a grid over the horizon. The baseline extrapolates the current value
along its recent linear trend, turned into a probability by a logistic fit on other data
(Platt scaling with scikit-learn); calibration and Brier score come from scikit-learn too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from twinode.errors import ConfigError


@dataclass(frozen=True)
class EventSpec:
    name: str = "CGM"
    threshold: float = 70.0
    below: bool = True
    horizon_h: float = 1.0
    step_h: float = 5.0 / 60.0

    def __post_init__(self):
        if not (self.horizon_h > 0 and 0 < self.step_h <= self.horizon_h):
            raise ConfigError("horizon_h/step_h", (self.horizon_h, self.step_h), hint="0 < step_h <= horizon_h")

    def query(self, now_h: float) -> Tensor:
        n = max(1, int(round(self.horizon_h / self.step_h)))
        return now_h + self.step_h * torch.arange(1, n + 1, dtype=torch.float32)

    def crosses(self, x: Tensor) -> Tensor:
        """Along the last axis: does the path cross the threshold?"""
        return (x < self.threshold).any(-1) if self.below else (x > self.threshold).any(-1)


def event_probability(samples: Tensor, channel: int, spec: EventSpec) -> float:
    """Share of trajectories ``[K, Q, D]`` that cross the threshold on ``channel``."""
    return float(spec.crosses(samples[:, :, channel]).to(torch.float32).mean())


def twin_event_probability(twin, times, values, mask, static, doses, channel: int, spec: EventSpec,
                           num_samples: int = 200, seed: int = 0) -> float:
    now = float(times[-1]) if len(times) else 0.0
    with torch.inference_mode():
        s = twin.sample(times, values, mask, static, doses, spec.query(now), num_samples, seed)
    return event_probability(s, channel, spec)


def trend_projection(times: np.ndarray, values: np.ndarray, now_h: float, spec: EventSpec, window_h: float = 0.5) -> float:
    """The extreme of current value + least-squares slope over the last ``window_h`` hours,
    over the horizon (the minimum for a 'below' event): the baseline's score."""
    keep = times >= now_h - window_h
    t, v = times[keep], values[keep]
    current = float(v[-1])
    slope = float(np.polyfit(t, v, 1)[0]) if len(t) >= 2 and np.ptp(t) > 0 else 0.0
    end = current + slope * spec.horizon_h
    return min(current, end) if spec.below else max(current, end)


def fit_logistic(score: np.ndarray, label: np.ndarray, steps: int = 200) -> tuple[float, float]:
    """Platt scaling: ``p = sigmoid(a * score + b)`` by unpenalised maximum likelihood
    (scikit-learn's LogisticRegression on the standardised score, mapped back to the raw score).
    With one class only, ``a = 0`` and ``b`` the clipped log-odds of its rate."""
    from sklearn.linear_model import LogisticRegression

    score, label = np.asarray(score, np.float64), np.asarray(label, np.float64)
    if label.min() == label.max():
        rate = float(np.clip(label.mean(), 1e-6, 1 - 1e-6))
        return 0.0, float(np.log(rate / (1 - rate)))
    mu, sd = float(score.mean()), float(score.std() + 1e-9)
    model = LogisticRegression(C=np.inf, max_iter=steps).fit(((score - mu) / sd)[:, None], label)
    a, b = float(model.coef_[0, 0]), float(model.intercept_[0])
    return a / sd, b - a * mu / sd  # on the raw score


def apply_logistic(score: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    from scipy.special import expit

    return expit(ab[0] * np.asarray(score, np.float64) + ab[1])


def brier(p: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (sklearn.metrics.brier_score_loss)."""
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(np.asarray(y), np.asarray(p, np.float64), pos_label=1))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width probability bin with data: count, mean predicted probability, observed
    rate (sklearn.calibration.calibration_curve, ``strategy="uniform"``; the counts use its bins)."""
    from sklearn.calibration import calibration_curve

    p, y = np.asarray(p, np.float64), np.asarray(y, np.float64)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    used = np.flatnonzero(counts)
    return [{"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(counts[b]), "predicted": float(pp), "observed": float(oo)}
            for b, pp, oo in zip(used, predicted, observed)]


def discrimination(score: np.ndarray, y: np.ndarray) -> dict:
    """AUROC and AUPRC (average precision) of a score against binary labels."""
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    if y.min() == y.max():
        return {"auroc": math.nan, "auprc": math.nan}
    s, t = torch.tensor(score, dtype=torch.float32), torch.tensor(y, dtype=torch.long)
    return {"auroc": float(binary_auroc(s, t)), "auprc": float(binary_average_precision(s, t))}


def lead_times(anchor_h: np.ndarray, p: np.ndarray, onset_h: np.ndarray, alarm_at: float, horizon_h: float) -> list[float]:
    """For each event onset: hours between the first alarm (``p >= alarm_at``) of the unbroken
    run of alarms just before the onset (within ``horizon_h``) and the onset; 0 when the
    last anchor before the onset did not alarm (a miss). ``anchor_h``/``p`` of one subject, sorted."""
    out = []
    for onset in onset_h:
        before = (anchor_h < onset) & (anchor_h >= onset - horizon_h)
        a, q = anchor_h[before], p[before]
        if len(a) == 0 or q[-1] < alarm_at:
            out.append(0.0)
            continue
        k = len(q) - 1
        while k > 0 and q[k - 1] >= alarm_at:
            k -= 1
        out.append(float(onset - a[k]))
    return out

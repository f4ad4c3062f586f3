"""The bolus-calculator rule as a what-if baseline: the effect of an insulin change on glucose
is ``-CF x`` the insulin of the change that has acted by then.

This is the arithmetic behind every pump's bolus calculator and insulin-on-board display:
a correction factor ``CF`` (mg/dL per U) and an insulin-action curve. The curve is the
exponential model of LoopKit/OpenAPS (peak activity ``peak_min`` after the dose, all insulin
acted after ``duration_min``; defaults 75 min and 6 h, the rapid-acting adult curve):

    tau = tp (1 - tp/td) / (1 - 2 tp/td),  a = 2 tau / td,  S = 1 / (1 - a + (1 + a) exp(-td/tau))
    remaining(t) = 1 - S (1 - a) ((t^2 / (tau td (1 - a)) - t/tau - 1) exp(-t/tau) + 1),  0 <= t <= td

A what-if forecaster built on it takes any forecast of the factual plan (e.g. the last
reading carried forward) and adds the rule's effect of the plan change. It knows each
patient's true CF and nothing else: meals, the patient's insulin sensitivity over the day
and the nonlinearity of glucose are outside it. A twin that cannot beat it on a plan change
has not learned the change's effect.
"""

from __future__ import annotations

import math

import numpy as np

PEAK_MIN = 75.0
DURATION_MIN = 360.0


def _shape(peak_min: float, duration_min: float) -> tuple[float, float, float]:
    if not 0 < 2 * peak_min < duration_min:
        raise ValueError(f"the insulin-action curve needs 0 < 2 x peak < duration, got peak {peak_min} min, "
                         f"duration {duration_min} min")
    tau = peak_min * (1 - peak_min / duration_min) / (1 - 2 * peak_min / duration_min)
    a = 2 * tau / duration_min
    s = 1 / (1 - a + (1 + a) * math.exp(-duration_min / tau))
    return tau, a, s


def insulin_remaining(t_min, peak_min: float = PEAK_MIN, duration_min: float = DURATION_MIN) -> np.ndarray:
    """Share of a dose not yet acted ``t_min`` minutes after it (1 before the dose, 0 after
    ``duration_min``)."""
    tau, a, s = _shape(peak_min, duration_min)
    t = np.clip(np.asarray(t_min, float), 0.0, duration_min)
    rem = 1 - s * (1 - a) * ((t ** 2 / (tau * duration_min * (1 - a)) - t / tau - 1) * np.exp(-t / tau) + 1)
    return np.clip(rem, 0.0, 1.0)


def insulin_acted(t_min, peak_min: float = PEAK_MIN, duration_min: float = DURATION_MIN) -> np.ndarray:
    """Share of a dose that has acted ``t_min`` minutes after it (0 before the dose)."""
    return 1.0 - insulin_remaining(t_min, peak_min, duration_min)


def insulin_activity(t_min, peak_min: float = PEAK_MIN, duration_min: float = DURATION_MIN) -> np.ndarray:
    """Rate of action per minute ``S / tau^2 t (1 - t/td) exp(-t/tau)`` (integrates to 1)."""
    tau, _, s = _shape(peak_min, duration_min)
    t = np.asarray(t_min, float)
    act = s / tau ** 2 * t * (1 - t / duration_min) * np.exp(-t / tau)
    return np.where((t > 0) & (t < duration_min), act, 0.0)


def rule_effect(insulin_change_u: np.ndarray, cf_mg_dl_per_u: np.ndarray, query_min: np.ndarray,
                peak_min: float = PEAK_MIN, duration_min: float = DURATION_MIN) -> np.ndarray:
    """Glucose effect (mg/dL) of an insulin change at the query minutes.

    ``insulin_change_u [S, T]``: extra insulin (U, negative for less) given in each minute
    ``0..T-1`` of a common clock (a bolus is one minute's entry, a basal change is its rate/60
    in every minute it runs); ``cf_mg_dl_per_u [S]``; ``query_min [Q]`` on the same clock.
    Returns ``[S, Q]``: ``-CF * sum_m change[m] * acted(q - m)``, insulin given at minute m
    counted as given at its start.
    """
    change = np.asarray(insulin_change_u, float)
    cf = np.asarray(cf_mg_dl_per_u, float).reshape(-1, 1)
    q = np.asarray(query_min, float)
    minutes = np.arange(change.shape[1], dtype=float)
    acted = insulin_acted(q[:, None] - minutes[None, :], peak_min, duration_min)  # [Q, T]
    acted = np.where(q[:, None] > minutes[None, :], acted, 0.0)
    return -cf * (change @ acted.T)

"""The embedded cohort's ideal observer: how well can a dose's effect be known from a history?

A twin predicts a subject's MAP lift after a dose from what the history shows. The
simulator that made the data (:mod:`synthetic_icu`) knows each subject's drug effect
(``emax``) and half-life; a twin has to infer them. This module infers them the best way
there is, with the simulator's own equations: given the half-life, MAP is linear-Gaussian in
its unknowns (MAP itself, the slow disturbance, the baseline ``map0``, the drift and
``emax``), so an exact Kalman filter over the MAP readings gives ``emax``'s posterior and the
evidence; half-lives are weighed on a grid by that evidence. The lift it predicts for a plan
is the posterior mean of the true lift (linear in ``emax``), and its correlation with the
true lifts across subjects is a ceiling for any twin that reads MAP (the observer ignores
heart rate and lactate, which say a little more about MAP: a tight ceiling, not a strict one).
"""

from __future__ import annotations

import numpy as np

from twinode.data.simulators.synthetic_icu import (DISTURB_DECAY, DISTURB_SD, DRIFT_PER_SICK, EC50, EMAX_RANGE,
                                                   HALF_LIFE_RANGE, MAP0, MAP_NOISE_SD, MAP_RATE, SICK_NOISE_SD,
                                                   WINDOW_HOURS, expected_sickness, map_dose_response)

# emax's uniform prior as a Gaussian with the same mean and variance.
EMAX_PRIOR = (sum(EMAX_RANGE) / 2, (EMAX_RANGE[1] - EMAX_RANGE[0]) ** 2 / 12)
HALF_LIVES = np.linspace(HALF_LIFE_RANGE[0], HALF_LIFE_RANGE[1], 7)


def emax_posterior(times: np.ndarray, map_obs: np.ndarray, doses: np.ndarray, cut: float, half_life: float,
                   age: float, noise_sd: float = MAP_NOISE_SD, dt: float = 0.05,
                   window_hours: float = WINDOW_HOURS) -> tuple[float, float, float]:
    """``(mean, variance, log evidence)`` of ``emax`` from the MAP readings ``(times, map_obs)``
    up to ``cut`` and the doses ``[(time, amount)]`` given before it, for one half-life."""
    n = int(round(cut / dt))
    decay = np.log(2) / half_life
    dose_step = np.round(np.asarray(doses, float).reshape(-1, 2)[:, 0] / dt).astype(int)
    amounts = np.asarray(doses, float).reshape(-1, 2)[:, 1]
    readings: dict[int, list[float]] = {}
    for step, v in zip(np.round(np.asarray(times) / dt).astype(int), map_obs):
        readings.setdefault(int(step), []).append(float(v))
    # State: MAP, disturbance, map0, drift, emax. MAP starts at map0; the disturbance at 0.
    x = np.array([MAP0[0], 0.0, MAP0[0], DRIFT_PER_SICK * expected_sickness(age), EMAX_PRIOR[0]])
    P = np.zeros((5, 5))
    P[0, 0] = P[2, 2] = P[0, 2] = P[2, 0] = MAP0[1] ** 2
    P[3, 3] = (DRIFT_PER_SICK * SICK_NOISE_SD) ** 2
    P[4, 4] = EMAX_PRIOR[1]
    R = noise_sd**2
    c, log_evidence = 0.0, 0.0
    a = dt * MAP_RATE
    F = np.eye(5)
    F[0, 0], F[0, 1], F[0, 2] = 1 - a, a, a
    F[1, 1] = 1 - DISTURB_DECAY * dt
    for j in range(n + 1):
        for v in readings.get(j, ()):
            S = P[0, 0] + R
            gain = P[:, 0] / S
            r = v - x[0]
            log_evidence -= 0.5 * (np.log(2 * np.pi * S) + r * r / S)
            x = x + gain * r
            P = P - np.outer(gain, P[0, :])
        if j == n:
            break
        c += amounts[dose_step == j].sum()
        F[0, 3] = -a * j * dt / window_hours
        F[0, 4] = a * c / (EC50 + c)
        x = F @ x
        P = F @ P @ F.T
        P[1, 1] += DISTURB_SD**2 * dt
        c -= dt * decay * c
    return float(x[4]), float(P[4, 4]), float(log_evidence)


def ideal_lift(times: np.ndarray, map_obs: np.ndarray, past_doses: np.ndarray, plan: np.ndarray, cut: float,
               age: float, query_times: np.ndarray) -> np.ndarray:
    """Posterior mean of the MAP difference at ``query_times`` between ``plan`` and
    ``past_doses`` (both ``[(time, amount)]``), from the MAP history up to ``cut``."""
    fits = [emax_posterior(times, map_obs, past_doses, cut, h, age) for h in HALF_LIVES]
    log_ev = np.array([f[2] for f in fits])
    w = np.exp(log_ev - log_ev.max())
    w /= w.sum()
    lifts = np.stack([map_dose_response(h, f[0], plan, past_doses, query_times) for h, f in zip(HALF_LIVES, fits)])
    return (w[:, None] * lifts).sum(0)

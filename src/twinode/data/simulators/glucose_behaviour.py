"""Randomised daily life of a person with type-1 diabetes: meals, boluses, corrections.

Per day: breakfast, lunch and dinner at jittered times, an optional afternoon snack; meal
sizes scale with body weight. Each meal bolus is carbs estimated with error divided by the
patient's carbohydrate ratio; some boluses are missed, some are late, most are given up to
15 minutes before eating. Three hours after each meal the patient checks the sensor and,
usually, corrects a high glucose with (glucose - target) / correction factor units. The
basal rate is the patient's steady-state rate, mistuned by a per-patient factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MINUTES_PER_DAY = 1440


@dataclass(frozen=True)
class Behaviour:
    """Distribution knobs; times are minutes after midnight."""

    meal_minutes: tuple[float, ...] = (7 * 60, 12.5 * 60, 19 * 60)
    meal_time_sd_min: float = 40.0
    meal_grams: tuple[float, ...] = (50.0, 70.0, 80.0)
    meal_grams_sd: float = 0.25  # relative
    snack_prob: float = 0.35
    snack_minute: float = 15.5 * 60
    snack_grams: float = 20.0
    carb_estimate_sd: float = 0.15  # log-normal error of the patient's carb count
    missed_bolus_prob: float = 0.10
    late_bolus_prob: float = 0.15
    late_bolus_min: tuple[float, float] = (15.0, 60.0)
    prebolus_min: tuple[float, float] = (-15.0, 5.0)
    basal_factor_sd: float = 0.10  # log-normal mistuning of the basal rate
    correction_delay_min: float = 180.0
    correction_threshold_mg_dl: float = 200.0
    correction_target_mg_dl: float = 120.0
    correction_prob: float = 0.7
    initial_glucose_sd: float = 0.10  # relative spread of the initial glucose states


@dataclass
class DailyPlan:
    """Per-minute inputs ``[B, T]`` and the patients' bolus-calculator settings ``[B]``."""

    meals_g: Tensor
    basal_u_per_min: Tensor
    meal_bolus_u: Tensor
    correction_check: Tensor  # bool [B, T]: the patient looks at the sensor this minute
    correction_accept: Tensor  # bool [B, T]: and acts on a high reading
    cf: Tensor  # mg/dL per U
    glucose_scale: Tensor  # [B] factor on the default initial glucose states


def draw_plan(rng: np.random.Generator, bw: np.ndarray, cr: np.ndarray, cf: np.ndarray, basal_u_per_min: np.ndarray,
              days: int, behaviour: Behaviour = Behaviour(), dtype=torch.float64) -> DailyPlan:
    """Meals and insulin for ``B`` patients over ``days`` days (vectorised over patients)."""
    B, T = len(bw), days * MINUTES_PER_DAY
    bh = behaviour
    meals = np.zeros((B, T))
    bolus = np.zeros((B, T))
    check = np.zeros((B, T), bool)
    size_scale = np.clip(bw / 70.0, 0.45, 1.3) ** 0.7
    rows = np.arange(B)
    for day in range(days):
        slots = [(m, g, np.ones(B, bool)) for m, g in zip(bh.meal_minutes, bh.meal_grams)]
        slots.append((bh.snack_minute, bh.snack_grams, rng.random(B) < bh.snack_prob))
        for centre, grams_mean, eats in slots:
            t = np.rint(day * MINUTES_PER_DAY + centre + rng.normal(0, bh.meal_time_sd_min, B)).astype(int)
            t = np.clip(t, day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY - 1)
            grams = np.maximum(5.0, np.rint(grams_mean * size_scale * np.exp(rng.normal(0, bh.meal_grams_sd, B))))
            estimate = grams * np.exp(rng.normal(0, bh.carb_estimate_sd, B))
            dose = np.round(estimate / cr / 0.05) * 0.05
            u = rng.random(B)
            offset = np.where(u < bh.late_bolus_prob, rng.uniform(*bh.late_bolus_min, B), rng.uniform(*bh.prebolus_min, B))
            missed = (u >= bh.late_bolus_prob) & (u < bh.late_bolus_prob + bh.missed_bolus_prob)
            given = eats & ~missed
            tb = np.clip(np.rint(t + offset).astype(int), 0, T - 1)
            np.add.at(meals, (rows[eats], t[eats]), grams[eats])
            np.add.at(bolus, (rows[given], tb[given]), dose[given])
            tc = t + int(bh.correction_delay_min)
            ok = eats & (tc < T)
            check[rows[ok], tc[ok]] = True
    basal = basal_u_per_min * np.exp(rng.normal(0, bh.basal_factor_sd, B))
    accept = rng.random((B, T)) < bh.correction_prob
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    return DailyPlan(as_t(meals), as_t(np.repeat(basal[:, None], T, 1)), as_t(bolus), torch.as_tensor(check),
                     torch.as_tensor(accept), as_t(cf), as_t(np.exp(rng.normal(0, bh.initial_glucose_sd, B))))


class CorrectionPolicy:
    """``policy(minute, gsub)`` for :meth:`UVAPadovaSimulator.simulate`: correction boluses.

    The patient reads the sensor (true glucose plus ``sensor_error``), and where the reading
    is above threshold gives (reading - target) / CF units, rounded to 0.05 U.
    """

    def __init__(self, plan: DailyPlan, behaviour: Behaviour, sensor_error: Tensor):
        self.plan, self.bh, self.err = plan, behaviour, sensor_error
        self.minutes = set(torch.nonzero(plan.correction_check.any(0)).flatten().tolist())

    def __call__(self, minute: int, gsub: Tensor) -> Tensor | None:
        if minute not in self.minutes:
            return None
        reading = gsub + self.err[:, minute].to(gsub)
        act = self.plan.correction_check[:, minute].to(gsub.device) & self.plan.correction_accept[:, minute].to(gsub.device)
        act = act & (reading > self.bh.correction_threshold_mg_dl)
        dose = torch.round((reading - self.bh.correction_target_mg_dl) / self.plan.cf.to(gsub) / 0.05) * 0.05
        return torch.where(act, dose, torch.zeros_like(dose))

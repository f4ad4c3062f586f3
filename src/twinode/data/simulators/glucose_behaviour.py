"""Randomised daily life of a person with type-1 diabetes: meals, boluses, corrections.

Per day: breakfast, lunch and dinner at jittered times, an optional afternoon snack; meal
sizes scale with body weight. Each meal bolus is carbs estimated with error divided by the
patient's carbohydrate ratio; some boluses are missed, some are late, some are given twice
(the patient forgets the first one), most are given up to 15 minutes before eating. Three
hours after each meal the patient checks the sensor and, usually, corrects a high glucose
with (glucose - target) / correction factor units. The basal rate is the patient's
steady-state rate, mistuned by a per-patient factor, with temporary basal rates (suspended,
halved, raised by half or doubled for 30 min to 4 h) at random times of the day.

``DailyPlan.events`` labels every such decision (kind, minute, units), so a cohort can say
how much plan variation its training windows hold (:mod:`glucose_variation`).

:func:`widen_plan` adds, for the subjects a twin learns from, plan changes as large as the
what-if questions it is asked (:class:`TrainingVariation`: a meal bolus given at twice its
dose, temporary basal rates of 4-8 h), from a random stream of its own.
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
    double_bolus_prob: float = 0.05  # a given meal bolus is repeated (the first one forgotten)
    double_bolus_gap_min: tuple[float, float] = (10.0, 60.0)
    basal_factor_sd: float = 0.10  # log-normal mistuning of the basal rate
    # Temporary basal rates: up to temp_basal_per_day a day, each with temp_basal_prob, at a
    # uniform time, lasting temp_basal_min, at one of temp_basal_factors x the programmed rate.
    temp_basal_per_day: int = 2
    temp_basal_prob: float = 0.5
    temp_basal_min: tuple[float, float] = (30.0, 240.0)
    temp_basal_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0)
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
    basal_rate_u_per_min: Tensor = None  # [B] the programmed (mistuned) basal rate, temporary rates aside
    # Labelled decisions: dict of equal-length arrays row, minute, kind, units, duration_min, factor.
    events: dict = None


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
    ev = {"row": [], "minute": [], "kind": [], "units": [], "duration_min": [], "factor": []}

    def label(r, minute, kind, units=None, duration=None, factor=None):
        n = len(r)
        ev["row"].append(np.asarray(r)); ev["minute"].append(np.asarray(minute, dtype=np.int64))  # noqa: E702
        ev["kind"].append(np.full(n, kind, dtype=object))
        for key, v in (("units", units), ("duration_min", duration), ("factor", factor)):
            ev[key].append(np.full(n, np.nan) if v is None else np.asarray(v, float))

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
            late = u < bh.late_bolus_prob
            given = eats & ~missed
            tb = np.clip(np.rint(t + offset).astype(int), 0, T - 1)
            # Draw only when the knob is on, so a behaviour without doubles keeps its random stream.
            twice, t2 = np.zeros(B, bool), tb
            if bh.double_bolus_prob > 0:
                twice = given & (rng.random(B) < bh.double_bolus_prob)
                t2 = np.clip(np.rint(tb + rng.uniform(*bh.double_bolus_gap_min, B)).astype(int), 0, T - 1)
            np.add.at(meals, (rows[eats], t[eats]), grams[eats])
            np.add.at(bolus, (rows[given], tb[given]), dose[given])
            np.add.at(bolus, (rows[twice], t2[twice]), dose[twice])
            label(rows[eats & missed], t[eats & missed], "missed_bolus")
            label(rows[given & late], tb[given & late], "late_bolus", dose[given & late])
            label(rows[twice], t2[twice], "double_bolus", dose[twice])
            tc = t + int(bh.correction_delay_min)
            ok = eats & (tc < T)
            check[rows[ok], tc[ok]] = True
    rate = basal_u_per_min * np.exp(rng.normal(0, bh.basal_factor_sd, B))
    basal = np.repeat(rate[:, None], T, 1)
    for day in range(days if bh.temp_basal_prob > 0 else 0):
        for _ in range(bh.temp_basal_per_day):
            on = rng.random(B) < bh.temp_basal_prob
            start = rng.integers(day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY, B)
            dur = np.rint(rng.uniform(*bh.temp_basal_min, B)).astype(int)
            factor = np.asarray(bh.temp_basal_factors, float)[rng.integers(0, len(bh.temp_basal_factors), B)]
            for i in np.nonzero(on)[0]:
                basal[i, start[i]: start[i] + dur[i]] = rate[i] * factor[i]
            dur = np.minimum(dur, T - start)
            label(rows[on], start[on], "temp_basal", None, dur[on], factor[on])
    accept = rng.random((B, T)) < bh.correction_prob
    as_t = lambda a: torch.as_tensor(a, dtype=dtype)  # noqa: E731
    events = {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in ev.items()}
    return DailyPlan(as_t(meals), as_t(basal), as_t(bolus), torch.as_tensor(check),
                     torch.as_tensor(accept), as_t(cf), as_t(np.exp(rng.normal(0, bh.initial_glucose_sd, B))),
                     as_t(rate), events)


@dataclass(frozen=True)
class TrainingVariation:
    """Extra plan changes per subject-day (times in minutes): with ``doubled_dose_prob`` one of
    the day's meal boluses is given at twice its dose (at its minute); with
    ``long_temp_basal_prob`` a temporary basal rate of ``long_temp_basal_min`` minutes at one of
    ``temp_basal_factors`` x the programmed rate starts at a uniform time of the day."""

    doubled_dose_prob: float = 0.25
    long_temp_basal_prob: float = 0.5
    long_temp_basal_min: tuple[float, float] = (240.0, 480.0)
    temp_basal_factors: tuple[float, ...] = (0.0, 0.5, 1.5, 2.0)


def widen_plan(plan: DailyPlan, rows: np.ndarray, rng: np.random.Generator, variation: TrainingVariation = TrainingVariation()) -> None:
    """Add :class:`TrainingVariation`'s plan changes to the patients ``rows`` of ``plan`` (in
    place, before simulation), labelled in ``plan.events`` as ``double_bolus`` (units: the
    extra dose) and ``temp_basal`` (duration, factor). Other rows are untouched."""
    rows = np.asarray(rows, dtype=np.int64)
    B, T = plan.meal_bolus_u.shape
    days = T // MINUTES_PER_DAY
    bolus, basal = plan.meal_bolus_u, plan.basal_u_per_min
    ev = plan.events
    new = {"row": [], "minute": [], "kind": [], "units": [], "duration_min": [], "factor": []}

    def label(r, minute, kind, units=np.nan, duration=np.nan, factor=np.nan):
        for key, v in zip(new, (r, minute, kind, units, duration, factor)):
            new[key].append(v)

    for day in range(days):
        lo, hi = day * MINUTES_PER_DAY, (day + 1) * MINUTES_PER_DAY
        doubled = rng.random(len(rows)) < variation.doubled_dose_prob
        pick = rng.random(len(rows))
        tb_on = rng.random(len(rows)) < variation.long_temp_basal_prob
        start = rng.integers(lo, hi, len(rows))
        dur = np.rint(rng.uniform(*variation.long_temp_basal_min, len(rows))).astype(int)
        factor = np.asarray(variation.temp_basal_factors, float)[rng.integers(0, len(variation.temp_basal_factors), len(rows))]
        for j, r in enumerate(rows):
            if doubled[j]:
                minutes = torch.nonzero(bolus[r, lo:hi] > 0).flatten()
                if len(minutes):
                    m = lo + int(minutes[int(pick[j] * len(minutes))])
                    label(r, m, "double_bolus", units=float(bolus[r, m]))
                    bolus[r, m] = 2.0 * bolus[r, m]
            if tb_on[j]:
                end = min(int(start[j] + dur[j]), T)
                basal[r, start[j]: end] = plan.basal_rate_u_per_min[r] * factor[j]
                label(r, int(start[j]), "temp_basal", duration=float(end - start[j]), factor=float(factor[j]))
    if new["row"]:
        ev["row"] = np.concatenate([ev["row"], np.asarray(new["row"], dtype=ev["row"].dtype)])
        ev["minute"] = np.concatenate([ev["minute"], np.asarray(new["minute"], dtype=np.int64)])
        ev["kind"] = np.concatenate([ev["kind"], np.asarray(new["kind"], dtype=object)])
        for key in ("units", "duration_min", "factor"):
            ev[key] = np.concatenate([ev[key], np.asarray(new[key], float)])


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

"""The embedded default cohort: synthetic ICU stays with a vasopressor and its response.

Physiology, per patient, integrated with small Euler steps:

* drug concentration ``c``: one-compartment kinetics, ``dc/dt = -ln2/t_half * c``; a bolus
  of ``a`` (mcg/kg) raises ``c`` by ``a``;
* mean arterial pressure ``MAP`` relaxes towards a baseline that drifts down in sicker
  patients, lifted by the drug through an Emax response, plus a slow random disturbance;
* heart rate ``HR`` follows a baroreflex: it rises when MAP falls below 75 and with fever;
* ``LACTATE`` accumulates while MAP < 65 and is cleared otherwise;
* temperature ``TEMP`` has a circadian rhythm and a fever that grows with sickness.

Channels are observed at their own irregular rates with noise and missingness; doses are
given by a bedside rule (MAP below 65) and at random. Sickness, hence drift and outcome,
depends on age. Forecasting beats last-observation-carried-forward only by learning the
drift, the rhythm and the dose response.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from twinode.data.schema import FeatureSpec

WINDOW_HOURS = 48.0  # each stay's length

SPEC_DICT = {
    "name": "synthetic_icu",
    "window_hours": WINDOW_HOURS,
    "features": [
        {"name": "HR", "role": "measurement", "code": "HR", "unit": "bpm", "valid_range": [20, 250]},
        {"name": "MAP", "role": "measurement", "code": "MAP", "unit": "mmHg", "valid_range": [15, 200]},
        {"name": "LACTATE", "role": "measurement", "code": "LACTATE", "unit": "mmol/L", "transform": "log1p", "valid_range": [0.1, 30]},
        {"name": "TEMP", "role": "measurement", "code": "TEMP", "unit": "degC", "valid_range": [30, 44]},
        {"name": "VASO", "role": "intervention", "code": "VASO", "unit": "mcg/kg", "kind": "bolus", "effect_half_life_h": 2.0},
        {"name": "AGE", "role": "static", "code": "AGE", "unit": "years"},
        {"name": "WEIGHT", "role": "static", "code": "WEIGHT", "unit": "kg"},
        {"name": "SEX", "role": "static", "code": "SEX", "unit": "1=female"},
        {"name": "DEATH", "role": "outcome", "code": "DEATH"},
    ],
}

# Observation schedule per channel: mean gap (h), gap jitter (fraction), missing rate, noise sd.
_OBSERVATION = {
    "HR": (1.0, 0.4, 0.10, 3.0),
    "MAP": (1.0, 0.4, 0.15, 4.0),
    "LACTATE": (6.0, 0.8, 0.05, 0.15),
    "TEMP": (4.0, 0.3, 0.10, 0.15),
}


def feature_spec() -> FeatureSpec:
    return FeatureSpec.from_dict(SPEC_DICT)


EC50 = 6.0  # mcg/kg: drug level giving half the maximal MAP lift
MAP_RATE = 0.6  # 1/h: how fast MAP relaxes towards its target
# Per-patient priors (draw_patients) and MAP's slow disturbance, named so the ideal observer
# (synthetic_icu_observer) infers with the very numbers the cohort was drawn with.
MAP0 = (82.0, 7.0)  # baseline MAP, mmHg: mean, sd
EMAX_RANGE = (18.0, 30.0)  # maximal drug lift, mmHg (uniform)
HALF_LIFE_RANGE = (1.5, 3.0)  # drug half-life, h (uniform)
SICK_NOISE_SD = 0.25  # spread of sickness around what age predicts
DRIFT_PER_SICK = 28.0  # mmHg of baseline fall over the window per unit of sickness
DISTURB_DECAY, DISTURB_SD = 0.2, 1.5  # 1/h and mmHg/sqrt(h): an Ornstein-Uhlenbeck disturbance
MAP_NOISE_SD = _OBSERVATION["MAP"][3]


def expected_sickness(age):
    """Sickness (0-1, before clipping) that age alone predicts."""
    return 0.6 * (age - 25) / 65


def draw_patients(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-patient parameters, drawn in a fixed order so a seed gives the same patients."""
    age = rng.uniform(25, 90, n)
    weight = rng.normal(78, 14, n).clip(45, 140)
    sex = rng.integers(0, 2, n).astype(float)
    sick = np.clip(expected_sickness(age) + rng.normal(0, SICK_NOISE_SD, n), 0, 1)
    map0 = rng.normal(MAP0[0], MAP0[1], n)
    hr0 = rng.normal(78, 8, n)
    half_life = rng.uniform(HALF_LIFE_RANGE[0], HALF_LIFE_RANGE[1], n)
    emax = rng.uniform(EMAX_RANGE[0], EMAX_RANGE[1], n)
    phase = rng.uniform(0, 24, n)
    fever = 1.6 * sick * rng.uniform(0.5, 1.0, n)
    return {"age": age, "weight": weight, "sex": sex, "sick": sick, "map0": map0, "drift": DRIFT_PER_SICK * sick,
            "hr0": hr0, "half_life": half_life, "emax": emax, "phase": phase, "fever": fever}


def patients(n_patients: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The parameters ``generate_cohort(n_patients, seed)`` simulated, indexed by subject_id."""
    return draw_patients(np.random.default_rng(seed), n_patients)


def map_dose_response(half_life: float, emax: float, doses: np.ndarray, baseline_doses: np.ndarray,
                      query_times: np.ndarray, dt: float = 0.05) -> np.ndarray:
    """True MAP difference (mmHg) at ``query_times`` between two bolus plans ``[(time_h, amount)]``.

    MAP relaxes linearly towards a target that the drug lifts by ``emax*c/(EC50+c)``, so the
    difference of two plans is that lift's difference passed through the same relaxation,
    independent of drift and disturbances. This is the counterfactual ground truth for what-if
    checks of a twin trained on this cohort.
    """
    horizon = float(max(query_times.max(), 0.0)) + dt
    grid = np.arange(0.0, horizon + dt, dt)
    k = np.log(2) / half_life

    def path(plan: np.ndarray) -> np.ndarray:
        c, m, out = 0.0, 0.0, np.empty(len(grid))
        steps = np.round(np.asarray(plan, float).reshape(-1, 2)[:, 0] / dt).astype(int)
        amounts = np.asarray(plan, float).reshape(-1, 2)[:, 1]
        for j in range(len(grid)):
            c += amounts[steps == j].sum()
            m += dt * MAP_RATE * (emax * c / (EC50 + c) - m)
            c -= dt * k * c
            out[j] = m
        return out

    diff = path(doses) - path(baseline_doses)
    return np.interp(query_times, grid, diff)


def generate_cohort(n_patients: int = 400, seed: int = 0, window_hours: float = WINDOW_HOURS, dt: float = 0.05) -> pl.DataFrame:
    """Events of ``n_patients`` synthetic stays: ``subject_id, time (h), code, numeric_value``."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    rng = np.random.default_rng(seed)
    n = n_patients
    p = draw_patients(rng, n)
    age, weight, sex, sick = p["age"], p["weight"], p["sex"], p["sick"]
    map0, drift, hr0, half_life, emax, phase, fever = (p[k] for k in ("map0", "drift", "hr0", "half_life", "emax", "phase", "fever"))
    ec50 = EC50

    steps = int(round(window_hours / dt))
    grid = np.arange(steps + 1) * dt
    c = np.zeros(n)
    map_ = map0.copy()
    hr = hr0.copy()
    lac = rng.uniform(0.8, 1.6, n)
    disturb = np.zeros(n)
    temp_at = lambda t: 37.0 + 0.35 * np.sin(2 * np.pi * (t + phase) / 24) + fever * np.minimum(t / 24, 1)
    traj = {k: np.empty((steps + 1, n)) for k in ("HR", "MAP", "LACTATE", "TEMP")}

    # Doses: random ones planned up front; rule-based ones decided on MAP checks every 2 h.
    dose_rows: list[tuple[int, float, float]] = []
    random_doses = [np.sort(rng.uniform(0, window_hours, rng.poisson(1.5))) for _ in range(n)]
    next_random = [list(d) for d in random_doses]
    last_dose = np.full(n, -1e9)
    check_every = int(round(2.0 / dt))

    for k in range(steps + 1):
        t = grid[k]
        traj["HR"][k], traj["MAP"][k], traj["LACTATE"][k], traj["TEMP"][k] = hr, map_, lac, temp_at(t)
        if k == steps:
            break
        give = np.zeros(n)
        if k % check_every == 0 and k > 0:
            low = (map_ < 65) & (t - last_dose >= 3.0) & (rng.random(n) < 0.8)
            give[low] = rng.uniform(6, 14, low.sum())
        for i in range(n):
            while next_random[i] and next_random[i][0] <= t:
                next_random[i].pop(0)
                give[i] += rng.uniform(4, 12)
        for i in np.nonzero(give)[0]:
            dose_rows.append((i, t, give[i]))
            last_dose[i] = t
        c = c + give
        effect = emax * c / (ec50 + c)
        target_map = map0 - drift * t / window_hours + effect + disturb
        target_hr = hr0 + 0.9 * np.maximum(75 - map_, 0) + 8 * (temp_at(t) - 37.0)
        disturb = disturb - DISTURB_DECAY * disturb * dt + DISTURB_SD * np.sqrt(dt) * rng.normal(size=n)
        map_ = map_ + dt * MAP_RATE * (target_map - map_)
        hr = hr + dt * 1.0 * (target_hr - hr)
        lac = lac + dt * (0.05 * np.maximum(65 - map_, 0) - 0.12 * (lac - 1.1))
        c = c - dt * np.log(2) / half_life * c

    events = []
    sid = np.arange(n, dtype=np.int64)
    for code, (gap, jitter, missing, noise) in _OBSERVATION.items():
        for i in range(n):
            t = rng.uniform(0, gap)
            times = []
            while t < window_hours:
                times.append(t)
                t += gap * max(0.1, 1 + jitter * rng.normal())
            times = np.asarray(times)
            times = times[rng.random(len(times)) >= missing]
            idx = np.minimum(np.round(times / dt).astype(int), steps)
            truth = traj[code][idx, i]
            if code == "LACTATE":
                obs = truth * np.exp(noise * rng.normal(size=len(times)))
            else:
                obs = truth + noise * rng.normal(size=len(times))
            events.append(pl.DataFrame({"subject_id": np.full(len(times), i, np.int64), "time": times, "code": code, "numeric_value": obs}))

    dose_arr = np.asarray(dose_rows, dtype=float).reshape(-1, 3)
    events.append(pl.DataFrame({"subject_id": dose_arr[:, 0].astype(np.int64), "time": dose_arr[:, 1], "code": "VASO", "numeric_value": dose_arr[:, 2]}))
    for code, val in (("AGE", age), ("WEIGHT", weight), ("SEX", sex)):
        events.append(pl.DataFrame({"subject_id": sid, "time": np.zeros(n), "code": code, "numeric_value": val}))
    max_lac = traj["LACTATE"].max(axis=0)
    p_death = 1 / (1 + np.exp(-(-3.0 + 1.1 * (max_lac - 2.0) + 1.5 * sick)))
    death = (rng.random(n) < p_death).astype(float)
    events.append(pl.DataFrame({"subject_id": sid, "time": np.full(n, window_hours), "code": "DEATH", "numeric_value": death}))

    out = pl.concat([e.with_columns(pl.col("numeric_value").cast(pl.Float32), pl.col("time").cast(pl.Float64)) for e in events])
    return out.sort(["subject_id", "time", "code"])


def default_splits(subject_ids: np.ndarray, seed: int = 0, fractions: tuple[float, float] = (0.7, 0.15)) -> dict[int, str]:
    """Deterministic train / tuning / held_out assignment by subject."""
    ids = np.unique(subject_ids)
    perm = np.random.default_rng(seed + 7919).permutation(ids)
    n_train = int(round(fractions[0] * len(ids)))
    n_tune = int(round(fractions[1] * len(ids)))
    split = {}
    for j, s in enumerate(perm):
        split[int(s)] = "train" if j < n_train else ("tuning" if j < n_train + n_tune else "held_out")
    return split

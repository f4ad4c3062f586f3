"""Simulated type-1 diabetes patients for closed-loop evaluation of the apps.

Unlike the MEDS cohort files, this keeps what an evaluation of monitoring and planning
needs: the true per-minute glucose, the simulator states (to replay a different plan from
any minute), the meals and insulin, and a way to hide a meal from the record. The same
behaviour model and sensor as ``glucose_cohort`` (UVA/Padova 2008, 30 virtual patients).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twinode.data.simulators.cgm_sensor import CGMSensor
from twinode.data.simulators.glucose_behaviour import Behaviour, CorrectionPolicy, draw_plan
from twinode.data.simulators.glucose_cohort import AGE_GROUPS, CGM_EVERY_MIN, _quest
from twinode.data.simulators.uva_padova import UVAPadovaSimulator, load_patients, patient_names


@dataclass
class World:
    names: list[str]
    statics: np.ndarray  # [B, 3] body weight, age group, age (the glucose spec's order)
    meals_g: torch.Tensor  # [B, T] what was eaten
    recorded_meals_g: torch.Tensor  # [B, T] what the record shows (hidden meals removed)
    insulin_u_per_min: torch.Tensor  # [B, T] delivered, corrections included
    basal_u_per_h: np.ndarray  # [B]
    cr: np.ndarray  # g per U
    cf: np.ndarray  # mg/dL per U
    truth: torch.Tensor  # [B, T+1] noise-free sensor glucose per minute
    cgm: torch.Tensor  # [B, T//5+1] readings every 5 min (noise, clipped 39-400)
    states: torch.Tensor  # [B, T+1, 13]

    def events(self, b: int, cgm: torch.Tensor | None = None, until_min: int | None = None) -> list[dict]:
        """Subject ``b``'s record as stream events (hours), time-ordered; readings from ``cgm``
        (default: the clean readings), up to ``until_min`` inclusive."""
        T = self.meals_g.shape[1]
        end = T if until_min is None else until_min
        ev = [{"time": 0.0, "code": c, "value": float(v)} for c, v in
              zip(("BodyWeight", "AgeGroup", "Age"), self.statics[b])]
        ev.append({"time": 0.0, "code": "InsulinBasal", "value": float(self.basal_u_per_h[b]), "duration_h": T / 60.0})
        bolus = (self.insulin_u_per_min[b] - self.basal_u_per_h[b] / 60.0).clamp(min=0.0)
        for m in torch.nonzero(self.recorded_meals_g[b] > 1e-9).flatten().tolist():
            if m <= end:
                ev.append({"time": m / 60.0, "code": "Carbs", "value": float(self.recorded_meals_g[b, m])})
        for m in torch.nonzero(bolus > 1e-6).flatten().tolist():
            if m <= end:
                ev.append({"time": m / 60.0, "code": "InsulinBolus", "value": float(bolus[m])})
        readings = self.cgm[b] if cgm is None else cgm
        for k, v in enumerate(readings.tolist()):
            if k * CGM_EVERY_MIN <= end:
                ev.append({"time": k * CGM_EVERY_MIN / 60.0, "code": "CGM", "value": float(v)})
        order = {"BodyWeight": 0, "AgeGroup": 0, "Age": 0, "InsulinBasal": 1, "Carbs": 2, "InsulinBolus": 3, "CGM": 4}
        return sorted(ev, key=lambda e: (e["time"], order[e["code"]]))


# Evaluation worlds keep one basal rate all day and no repeated boluses (their event lists
# carry one basal rate; the planning and monitoring results were measured on them).
WORLD_BEHAVIOUR = Behaviour(double_bolus_prob=0.0, temp_basal_prob=0.0)


def simulate_world(n: int, seed: int, days: int = 1, hidden_meals: dict[int, tuple[int, float]] | None = None,
                   behaviour: Behaviour = WORLD_BEHAVIOUR) -> World:
    """``n`` patients; ``hidden_meals[b] = (minute, grams)`` adds an unrecorded meal (no bolus)."""
    rng = np.random.default_rng(seed)
    names = patient_names()
    chosen = [names[i] for i in rng.integers(0, len(names), n)]
    quest = _quest()
    patients = load_patients(chosen)
    p = {k: v.numpy() for k, v in patients.params.items()}
    cr = np.array([quest[c]["CR"] for c in chosen])
    cf = np.array([quest[c]["CF"] for c in chosen])
    plan = draw_plan(rng, p["BW"], cr, cf, patients.basal_u_per_min().numpy(), days, behaviour)
    T = plan.meals_g.shape[1]
    gen = torch.Generator().manual_seed(seed)
    err = CGMSensor().noise((n, T // CGM_EVERY_MIN + 1), gen)
    x0 = patients.x0.clone()
    for k in (3, 4, 12):
        x0[:, k] = x0[:, k] * plan.glucose_scale
    meals = plan.meals_g.clone()
    for b, (minute, grams) in (hidden_meals or {}).items():
        meals[b, minute] += grams
    res = UVAPadovaSimulator(patients).simulate(meals, plan.basal_u_per_min + plan.meal_bolus_u, x0=x0, keep_states=True,
                                                policy=CorrectionPolicy(plan, behaviour, err.repeat_interleave(CGM_EVERY_MIN, 1)[:, : T + 1]))
    truth = res.gsub
    sensor = CGMSensor()
    cgm = torch.clamp(truth[:, ::CGM_EVERY_MIN] + err, sensor.min_mg_dl, sensor.max_mg_dl)
    statics = np.stack([p["BW"], [AGE_GROUPS[c.split("#")[0]] for c in chosen], [quest[c]["Age"] for c in chosen]], 1)
    return World(chosen, statics, meals, plan.meals_g, res.insulin_u_per_min, plan.basal_rate_u_per_min.numpy() * 60.0,
                 cr, cf, truth, cgm, res.states)


def replay(world: World, rows: list[int], from_min: int, meals_g: torch.Tensor, insulin_u_per_min: torch.Tensor) -> torch.Tensor:
    """True glucose ``[len(rows), T'+1]`` from minute ``from_min`` of each subject under new inputs ``[len(rows), T']``."""
    sim = UVAPadovaSimulator(load_patients([world.names[b] for b in rows]))
    res = sim.simulate(meals_g, insulin_u_per_min, x0=world.states[rows, from_min], keep_states=False)
    return res.gsub

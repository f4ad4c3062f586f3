"""Treatment-plan evaluation of a glucose twin against the simulator's true outcomes.

For each simulated patient, at lunch (the meal is announced): history = CGM, meals and
insulin up to then; candidates = lunch bolus of k x the standard basal-bolus rule
(carbs / CR + max(0, (CGM - 120) / CF)), k in 0 .. 1.5, basal unchanged. The twin ranks
the candidates by time in 70-180 mg/dL minus 3 x time below 70 over 6 h; every candidate
is then replayed in UVA/Padova from the patient's true state at lunch. Reported per policy
(standard rule, twin's choice, the twin's bounded dose search, the best candidate in
hindsight): true time in range, time below 70, hypoglycaemia events (>= 15 min < 70).

    .venv/bin/python scripts/eval_planning.py --twin outputs/glucose_apps200/twin.pt --subjects 24 --seed 21 --out planning.json
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from twinode.apps.glucose_world import replay, simulate_world
from twinode.apps.planning import Objective, SafetyBounds, optimise_plan, rank_plans
from twinode.apps.stream import EventStream
from twinode.apps.online import OnlineTwin
from twinode.export.torchscript import load_verified_twin

MULTIPLIERS = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5)
HORIZON_MIN = 360


def outcome(g: np.ndarray, obj: Objective) -> dict:
    below = g < obj.low
    events, run = 0, 0
    for x in below:
        run = run + 1 if x else 0
        events += run == 15
    return {"tir": float(((g >= obj.low) & (g <= obj.high)).mean()), "tbr": float(below.mean()), "hypo_events": events,
            "score": float(((g >= obj.low) & (g <= obj.high)).mean() - obj.hypo_penalty * below.mean())}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--twin", required=True)
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--optimise", action="store_true", help="also run the bounded dose search")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None, help="PNG of the first subject's candidates")
    a = ap.parse_args()
    torch.set_num_threads(1)
    twin, meta = load_verified_twin(a.twin)
    t0 = time.perf_counter()
    world = simulate_world(a.subjects, a.seed)
    obj = Objective(horizon_h=HORIZON_MIN / 60)
    per = {k: [] for k in ("rule", "twin_choice", "hindsight_best", "twin_search")}
    agree = []
    for b in range(a.subjects):
        lunch = [m for m in torch.nonzero(world.recorded_meals_g[b] > 0).flatten().tolist() if 11 * 60 <= m <= 14 * 60]
        if not lunch:
            continue
        m0 = lunch[0]
        grams = float(world.recorded_meals_g[b, m0])
        state = OnlineTwin(twin, meta, num_samples=0)
        events = [e for e in world.events(b, until_min=m0 - 1)]
        for ev in EventStream((json.dumps(e) for e in events), meta, "sim"):
            state.add_event(ev)
        t, v, mask = state.history()
        cgm_now = float(v[-1, 0])
        rule = grams / world.cr[b] + max(0.0, (cgm_now - 120.0) / world.cf[b])
        meal = torch.tensor([[m0 / 60, 0.0, grams, 0.0]])
        cands = [(f"x{k:g}", torch.cat([meal, torch.tensor([[m0 / 60, 1.0, k * rule, 0.0]])])) for k in MULTIPLIERS]
        hist = (t, v, mask, state.static)
        past = state.dose_tensor(m0 / 60 + obj.horizon_h)
        ranked = rank_plans(twin, hist, past, cands, obj, a.samples, seed=b)
        basal = world.basal_u_per_h[b] / 60.0
        meals = torch.zeros(len(cands), HORIZON_MIN, dtype=torch.float64)
        meals[:, 0] = grams
        ins = torch.full((len(cands), HORIZON_MIN), basal, dtype=torch.float64)
        ins[:, 0] += torch.tensor([k * rule for k in MULTIPLIERS], dtype=torch.float64)
        g = replay(world, [b] * len(cands), m0, meals, ins)[:, 1:].numpy()
        true = {lab: outcome(g[i], obj) for i, (lab, _) in enumerate(cands)}
        per["rule"].append(true["x1"])
        per["twin_choice"].append(true[ranked[0].label])
        per["hindsight_best"].append(max(true.values(), key=lambda r: r["score"]))
        twin_scores = {s.label: s.score for s in ranked}
        agree.append(float(np.corrcoef(np.argsort(np.argsort([twin_scores[l] for l, _ in cands])),
                                       np.argsort(np.argsort([true[l]["score"] for l, _ in cands])))[0, 1]))
        if a.optimise:
            bounds = SafetyBounds(channel=1, max_dose=max(1.5 * rule, 0.5), min_spacing_h=2.0, max_total=2.0 * rule + 1.0)
            best, how = optimise_plan(twin, hist, past, meal, obj, bounds, num_samples=16, seed=b, steps=10)
            ins1 = torch.full((1, HORIZON_MIN), basal, dtype=torch.float64)
            for d in best.doses.tolist():
                if int(d[1]) == 1:
                    # A dose at a slot before the meal (the history ends at the last reading) is given with it.
                    ins1[0, min(max(int(round(d[0] * 60)) - m0, 0), HORIZON_MIN - 1)] += d[2]
            g1 = replay(world, [b], m0, meals[:1], ins1)[:, 1:].numpy()
            per["twin_search"].append({**outcome(g1[0], obj), "method": how})
        if a.plot and b == 0:
            from twinode.apps.plots import plot_plans

            plot_plans(a.plot, t.numpy(), v[:, 0].numpy(), ranked, "CGM", "mg/dL")
    summary = {}
    for k, rows in per.items():
        if rows:
            summary[k] = {"patients": len(rows), "tir_pct": 100 * statistics.mean(r["tir"] for r in rows),
                          "tbr_pct": 100 * statistics.mean(r["tbr"] for r in rows),
                          "hypo_events": sum(r["hypo_events"] for r in rows),
                          "patients_with_hypo": sum(r["hypo_events"] > 0 for r in rows)}
            if k == "twin_search":
                summary[k]["methods"] = {m: sum(r["method"] == m for r in rows) for m in sorted({r["method"] for r in rows})}
    res = {"twin": a.twin, "run_id": meta.get("training_run_id"), "summary": summary,
           "rank_agreement_spearman_median": statistics.median(agree) if agree else None,
           "seconds": time.perf_counter() - t0}
    print(json.dumps(res, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({**res, "per_patient": per}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Monitoring and early-warning evaluation of a glucose twin on simulated patients.

Monitoring: every subject gets one injected anomaly after hour 8 — a sensor spike, a sensor
drift, a compression low (readings attenuated), or an unannounced meal (eaten, not recorded,
no bolus) — and its events stream through ``Monitor``. Alert episodes (alerts <= 15 min
apart) that start inside an anomaly's window are true; the others are false alarms.
Early warning: on clean streams, P(CGM < 70 mg/dL within 60 min) every 15 min from hour 6,
from the twin's samples, against current value + 30-min trend (Platt-scaled on the even
subjects; all scores on the odd ones); labels from the noise-free glucose.

    .venv/bin/python scripts/eval_monitoring.py --twin outputs/glucose_apps200/twin.pt \
        --subjects 24 --seed 11 --out monitoring.json [--plots docs/img]
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from twinode.apps.early_warning import (EventSpec, apply_logistic, brier, discrimination, event_probability, fit_logistic,
                                        lead_times, reliability, trend_projection)
from twinode.apps.glucose_world import simulate_world
from twinode.apps.monitor import AlertRule, Monitor
from twinode.apps.stream import EventStream
from twinode.export.torchscript import load_verified_twin

KINDS = ("spike", "drift", "compression", "unannounced_meal")
WINDOW_MIN = {"spike": 15, "drift": 120, "compression": 45, "unannounced_meal": 120}


def inject(world, rng):
    """Per subject: (kind, onset minute) and the faulty readings."""
    out = []
    for b in range(world.cgm.shape[0]):
        kind = KINDS[b % len(KINDS)]
        onset = int(rng.integers(8 * 12, 20 * 12)) * 5
        cgm = world.cgm[b].clone()
        k = onset // 5
        if kind == "spike":
            cgm[k] = cgm[k] + (60.0 if rng.random() < 0.5 else -60.0)
        elif kind == "drift":
            cgm[k:k + 24] = cgm[k:k + 24] + 0.5 * 5 * torch.arange(1, len(cgm[k:k + 24]) + 1)  # +0.5 mg/dL/min for 2 h
        elif kind == "compression":
            cgm[k:k + 6] = cgm[k:k + 6] * 0.6  # 30 min attenuated
        out.append((kind, onset, cgm.clamp(39.0, 400.0)))
    return out


def score_stream(twin, meta, events, samples):
    mon = Monitor(twin, meta, AlertRule(threshold=1e9, warmup=6), num_samples=samples)
    lines = (json.dumps(e) for e in events)
    return list(mon.run_stream(EventStream(lines, meta, "sim"))), mon


def episodes(times_min, alerts, gap=15):
    eps = []
    for t, a in zip(times_min, alerts):
        if a:
            if eps and t - eps[-1][1] <= gap:
                eps[-1][1] = t
            else:
                eps.append([t, t])
    return eps


def monitoring(twin, meta, n, seed, samples):
    rng = np.random.default_rng(seed)
    hidden = {}
    for b in range(n):
        if KINDS[b % len(KINDS)] == "unannounced_meal":
            hidden[b] = (int(rng.integers(9 * 60, 17 * 60)), float(rng.uniform(40, 70)))
    world = simulate_world(n, seed, hidden_meals=hidden)
    faults = inject(world, rng)
    series, costs = [], []
    for b in range(n):
        kind, onset, cgm = faults[b]
        if kind == "unannounced_meal":
            onset, cgm = hidden[b][0], world.cgm[b]
        scored, _ = score_stream(twin, meta, world.events(b, cgm), samples)
        series.append((kind, onset, [s.time_h * 60 for s in scored], [s.z for s in scored]))
        costs += [s.seconds for s in scored]
    rows = []
    hours = sum((s[2][-1] - s[2][0]) / 60 for s in series)
    for thr in (2.0, 2.5, 3.0, 4.0):
        for consec in (1, 2):
            tp = fp = 0
            detected, delays = {k: 0 for k in KINDS}, []
            for kind, onset, tm, z in series:
                rule = AlertRule(threshold=thr, consecutive=consec)
                run, alerts = 0, []
                for v in z:
                    run = run + 1 if rule.exceeds(v) else 0
                    alerts.append(run >= consec)
                hit = False
                for a, _ in episodes(tm, alerts):
                    if onset <= a <= onset + WINDOW_MIN[kind]:
                        tp += 1
                        if not hit:
                            delays.append(a - onset)
                        hit = True
                    else:
                        fp += 1
                detected[kind] += hit
            per_kind = {k: detected[k] / sum(1 for s in series if s[0] == k) for k in KINDS}
            rows.append({"threshold": thr, "consecutive": consec, "precision": tp / max(tp + fp, 1),
                         "recall": sum(detected.values()) / n, "recall_by_kind": per_kind,
                         "median_delay_min": statistics.median(delays) if delays else None,
                         "false_alarms_per_day": fp / hours * 24})
    return rows, {"median_ms": 1e3 * statistics.median(costs), "p90_ms": 1e3 * float(np.quantile(costs, 0.9)), "events": len(costs)}, world


def per_event_cost(twin, meta, world, samples):
    """Median cost of one reading (forecast + update) with the incremental step and with full re-encoding."""
    out = {}
    for label, inc in (("incremental", True), ("full_reencode", False)):
        mon = Monitor(twin, meta, AlertRule(threshold=1e9, warmup=6), num_samples=samples, incremental=inc)
        scored = list(mon.run_stream(EventStream((json.dumps(e) for e in world.events(0)), meta, "sim")))
        t = [s.seconds for s in scored]
        out[label] = {"median_ms_first_50": 1e3 * statistics.median(t[:50]), "median_ms_last_50": 1e3 * statistics.median(t[-50:])}
    return out


def early_warning(twin, meta, n, seed, samples):
    world = simulate_world(n, seed + 1)
    spec = EventSpec("CGM", 70.0, True, 1.0)
    rows = []
    for b in range(n):
        _, mon = score_stream(twin, meta, [], samples)  # an empty monitor to hold the state
        events = world.events(b)
        stream = EventStream((json.dumps(e) for e in events), meta, "sim")
        anchors = iter(range(6 * 60, 23 * 60 + 1, 15))
        nxt = next(anchors)
        for ev in stream:
            while nxt is not None and ev.time * 60 > nxt + 1e-6:
                rows.append(_anchor_row(twin, mon.state, world, b, nxt, spec, samples))
                nxt = next(anchors, None)
            mon.feed(ev)
    ys = np.array([r["label"] for r in rows], float)
    keep = np.array([not r["already"] for r in rows])
    odd = np.array([r["subject"] % 2 == 1 for r in rows])
    p_twin = np.array([r["p_twin"] for r in rows])
    s_base = -np.array([r["projection"] for r in rows])
    ab = fit_logistic(s_base[keep & ~odd], ys[keep & ~odd])
    p_base = apply_logistic(s_base, ab)
    ev = keep & odd
    out = {"anchors": int(ev.sum()), "positives": int(ys[ev].sum()),
           "twin": {**discrimination(p_twin[ev], ys[ev]), "brier": brier(p_twin[ev], ys[ev]), "reliability": reliability(p_twin[ev], ys[ev])},
           "trend": {**discrimination(p_base[ev], ys[ev]), "brier": brier(p_base[ev], ys[ev]), "reliability": reliability(p_base[ev], ys[ev])},
           "prevalence_brier": brier(np.full(ev.sum(), ys[ev].mean()), ys[ev])}
    # Lead time: per onset (truth crosses below 70 after hour 7), first alarm (p >= 0.3) of the run before it.
    for name, p in (("twin", p_twin), ("trend", p_base)):
        leads = []
        for b in range(1, n, 2):
            sel = np.array([r["subject"] == b for r in rows])
            a = np.array([r["minute"] for r in rows])[sel] / 60.0
            g = world.truth[b].numpy()
            onsets = [m / 60.0 for m in range(7 * 60, len(g)) if g[m] < 70 <= g[m - 1]]
            leads += lead_times(a, p[sel], np.array(onsets), 0.3, 1.0)
        out[name]["lead_times_min"] = [round(60 * x) for x in leads]
        out[name]["median_lead_min"] = 60 * statistics.median(leads) if leads else None
    return out


def _anchor_row(twin, state, world, b, minute, spec, samples):
    t, v, m = state.history()
    q = spec.query(minute / 60.0)
    with torch.inference_mode():
        s = twin.sample(t, v, m, state.static, state.dose_tensor(float(q.max())), q, samples, minute)
    g = world.truth[b]
    future = g[minute + 1: minute + 61]
    times, vals = t.numpy() * 1.0, v[:, 0].numpy()
    return {"subject": b, "minute": minute, "p_twin": event_probability(s, 0, spec),
            "projection": trend_projection(times, vals, float(times[-1]), spec),
            "label": float((future < 70).any()), "already": bool(g[minute] < 70)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--twin", required=True)
    ap.add_argument("--subjects", type=int, default=24)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--samples", type=int, default=16, help="latent draws for monitoring z-scores")
    ap.add_argument("--ew-subjects", type=int, default=40)
    ap.add_argument("--ew-samples", type=int, default=100)
    ap.add_argument("--out", default=None)
    ap.add_argument("--plots", default=None, help="folder for a monitoring figure and the reliability curve")
    a = ap.parse_args()
    torch.set_num_threads(1)
    twin, meta = load_verified_twin(a.twin)
    t0 = time.perf_counter()
    rows, cost, world = monitoring(twin, meta, a.subjects, a.seed, a.samples)
    res = {"twin": a.twin, "run_id": meta.get("training_run_id"), "monitoring": rows, "cost": cost,
           "per_event_cost": per_event_cost(twin, meta, world, a.samples)}
    print(json.dumps(res, indent=1), flush=True)
    res["early_warning"] = early_warning(twin, meta, a.ew_subjects, a.seed, a.ew_samples)
    res["seconds"] = time.perf_counter() - t0
    print(json.dumps(res["early_warning"], indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)
    if a.plots:
        from twinode.apps.plots import plot_monitor, plot_reliability

        plot_reliability(f"{a.plots}/early_warning_reliability.png",
                         {k: res["early_warning"][k]["reliability"] for k in ("twin", "trend")})
        kind, onset = "unannounced_meal", None
        b = KINDS.index(kind)
        scored, _ = score_stream(twin, meta, world.events(b), a.samples)
        for s in scored:
            s.alert = AlertRule(threshold=3.0).exceeds(s.z)
        plot_monitor(f"{a.plots}/monitor_example.png", scored, "CGM", "mg/dL", 3.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())

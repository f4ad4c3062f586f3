"""What-if check on the embedded cohort: does the twin move MAP after a vasopressor dose as
much as the simulator that made the data?

For every subject of the split with a dose in the 8 h after a cut, the exported twin
forecasts MAP with and without those doses; the simulator's exact counterfactual
(``synthetic_icu.map_dose_response``) gives the true difference for the same plans. Each cut
of ``--cuts`` that has a dose after it is one case (the default, one cut at 30 h on the tuning
split, is the figure docs/results.md reports; more cuts and ``--split held_out`` give more cases).

    .venv/bin/python scripts/eval_dose_response.py --twin outputs/train/runs/<time>/twin.pt [--time-course]
        [--delays 0.25,1,2,4,6,8,12]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from twinode.data.simulators.synthetic_icu import EMAX_RANGE, HALF_LIFE_RANGE, map_dose_response, patients
from twinode.data.simulators.synthetic_icu_observer import ideal_lift
from twinode.data.sources import SyntheticICUSource
from twinode.data.tensorize import tensorize
from twinode.export.torchscript import load_twin

# The middle of the cohort's parameter ranges (synthetic_icu.draw_patients).
POP_HALF_LIFE, POP_EMAX = sum(HALF_LIFE_RANGE) / 2, sum(EMAX_RANGE) / 2
COURSE_H = (0.25, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


def history_inputs(r, cut: float, log1p: list) -> tuple[list, np.ndarray, np.ndarray]:
    """``forecast``'s first four arguments from a record's history up to ``cut`` (original units:
    tensorize stores transformed values), the doses given by then, and which rows are history."""
    keep = r.times <= cut
    values = r.values[keep].copy()
    values[:, log1p] = np.expm1(values[:, log1p])
    return [torch.tensor(a) for a in (r.times[keep], values, r.mask[keep], r.static)], r.doses[r.doses[:, 0] <= cut], keep


def correlation(a, b) -> float:
    """Pearson correlation across subjects; NaN for fewer than three."""
    return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 else float("nan")


def twin_lift(twin, history: list, plan: np.ndarray, past: np.ndarray, q: np.ndarray) -> torch.Tensor:
    """The twin's forecast under ``plan`` minus under the doses ``past`` alone, ``[Q, D]``."""
    with torch.no_grad():
        return twin.forecast(*history, torch.tensor(plan), torch.tensor(q))[0] - \
            twin.forecast(*history, torch.tensor(past), torch.tensor(q))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--twin", required=True)
    ap.add_argument("--n-patients", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cuts", type=lambda s: [float(c) for c in s.split(",")], default=[30.0],
                    help="hours of history, comma-separated (one case per cut with a dose after it)")
    ap.add_argument("--split", choices=["tuning", "held_out"], default="tuning")
    ap.add_argument("--window", type=float, default=8.0, help="doses within this many hours after the cut")
    ap.add_argument("--time-course", action="store_true",
                    help="also the mean MAP lift of each case's first dose alone, 15 min to 8 h after it")
    ap.add_argument("--delays", type=lambda s: [float(c) for c in s.split(",")], default=None,
                    help="also one standard dose (--dose) this many hours after a 24-h history, every subject "
                         "of the split, comma-separated: twin and ideal observer against the truth")
    ap.add_argument("--dose", type=float, default=8.0, help="the standard dose of --delays (mcg/kg)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    twin, meta = load_twin(args.twin)
    map_ch = [m["name"] for m in meta["measurements"]].index("MAP")
    log1p = [m["transform"] == "log1p" for m in meta["measurements"]]
    loaded = SyntheticICUSource(args.n_patients, args.seed).load()
    records, _ = tensorize(loaded.events, loaded.spec)
    params = patients(args.n_patients, args.seed)
    model_peak, true_peak, plan_peak, own_emax_peak, ideal_peak = [], [], [], [], []
    course_twin, course_true = [], []
    cases = [(r, cut) for r in records if loaded.splits[r.subject_id] == args.split for cut in args.cuts]
    for r, cut in cases:
        future = r.doses[(r.doses[:, 0] > cut) & (r.doses[:, 0] <= cut + args.window)]
        if len(future) == 0:
            continue
        history, past, keep = history_inputs(r, cut, log1p)
        q = np.arange(future[0, 0] + 0.5, future[0, 0] + 4.01, 0.5, dtype=np.float32)
        model_peak.append(float(twin_lift(twin, history, np.concatenate([past, future]), past, q)[:, map_ch].max()))
        i = r.subject_id
        truth = map_dose_response(params["half_life"][i], params["emax"][i], r.doses[:, [0, 2]], past[:, [0, 2]], q)
        true_peak.append(float(truth.max()))
        # References: the simulator with the population's parameters for everyone (what the plan
        # alone tells), and with this subject's own drug effect (what a history could add).
        plan_peak.append(float(map_dose_response(POP_HALF_LIFE, POP_EMAX, r.doses[:, [0, 2]], past[:, [0, 2]], q).max()))
        own_emax_peak.append(float(map_dose_response(POP_HALF_LIFE, params["emax"][i], r.doses[:, [0, 2]],
                                                     past[:, [0, 2]], q).max()))
        seen = keep & (r.mask[:, map_ch] > 0)
        ideal_peak.append(float(ideal_lift(r.times[seen], r.values[seen, map_ch], past[:, [0, 2]], r.doses[:, [0, 2]],
                                           cut, params["age"][i], q).max()))
        if args.time_course:
            first = np.concatenate([past, future[:1]])
            grid = future[0, 0] + np.asarray(COURSE_H, dtype=np.float32)
            course_twin.append(twin_lift(twin, history, first, past, grid)[:, map_ch].numpy())
            course_true.append(map_dose_response(params["half_life"][i], params["emax"][i], first[:, [0, 2]],
                                                 past[:, [0, 2]], grid))
    m, t = np.asarray(model_peak), np.asarray(true_peak)
    if len(m) == 0:
        raise SystemExit(f"error: no {args.split} subject has a dose after a cut; change --cuts or widen --window")
    corr = correlation(m, t)
    print("| cases | true peak MAP lift (mmHg) | twin's peak MAP lift (mmHg) | twin / truth | correlation across subjects |")
    print("|---|---|---|---|---|")
    print(f"| {len(m)} | {t.mean():.2f} | {m.mean():.2f} | {m.mean() / t.mean():.2f} | {corr:.2f} |")
    if len(m) > 2:
        p, e, o = np.asarray(plan_peak), np.asarray(own_emax_peak), np.asarray(ideal_peak)
        print()
        print("| correlation with the true lifts: simulator, population parameters (the plan alone) | ideal observer "
              "(the simulator's equations, each subject's unknowns inferred from the MAP history) | its lift ratio | "
              "simulator, each subject's emax | twin with the population run | twin's departure from it with the truth's |")
        print("|---|---|---|---|---|---|")
        print(f"| {correlation(p, t):.2f} | {correlation(o, t):.2f} | {o.mean() / t.mean():.2f} | {correlation(e, t):.2f} | "
              f"{correlation(m, p):.2f} | {correlation(m / m.mean() - p / p.mean(), t / t.mean() - p / p.mean()):.2f} |")
    if args.delays:
        subjects = [r for r in records if loaded.splits[r.subject_id] == args.split]
        delay_table(twin, map_ch, log1p, subjects, params, args.delays, args.dose)
    if args.time_course:
        tw, tr = np.mean(course_twin, axis=0), np.mean(course_true, axis=0)
        print()
        print("| mean MAP lift (mmHg), h after the first dose | " + " | ".join(f"{h:g}" for h in COURSE_H) + " |")
        print("|---" * (len(COURSE_H) + 1) + "|")
        print("| simulator | " + " | ".join(f"{v:.2f}" for v in tr) + " |")
        print("| twin | " + " | ".join(f"{v:.2f}" for v in tw) + " |")


def delay_table(twin, map_ch: int, log1p: list, subjects, params: dict, delays: list[float], dose: float,
                cut: float = 24.0) -> None:
    """One standard ``dose`` at ``cut + delay`` for every record in ``subjects``: how much of the
    spread of the true lifts across subjects the twin follows, beside the ideal observer, as
    the drug already given wears off and what is left to tell subjects apart is their own response."""
    rows = {d: ([], [], []) for d in delays}  # twin, truth, ideal observer
    for r in subjects:
        history, past, keep = history_inputs(r, cut, log1p)
        i = r.subject_id
        seen = keep & (r.mask[:, map_ch] > 0)
        for d in delays:
            plan = np.concatenate([past, np.array([[cut + d, 0.0, dose, 0.0]], dtype=past.dtype)])
            q = np.arange(cut + d + 0.5, cut + d + 4.01, 0.5, dtype=np.float32)
            tw, tr, io = rows[d]
            tw.append(float(twin_lift(twin, history, plan, past, q)[:, map_ch].max()))
            tr.append(float(map_dose_response(params["half_life"][i], params["emax"][i], plan[:, [0, 2]],
                                              past[:, [0, 2]], q).max()))
            io.append(float(ideal_lift(r.times[seen], r.values[seen, map_ch], past[:, [0, 2]], plan[:, [0, 2]],
                                       cut, params["age"][i], q).max()))
    print()
    print(f"| {dose:g} mcg/kg, h after a {cut:g}-h history | subjects | true peak lift (mmHg) | twin / truth | "
          "twin's correlation with the truth | ideal observer / truth | its correlation |")
    print("|---|---|---|---|---|---|---|")
    for d, (tw, tr, io) in rows.items():
        tw, tr, io = map(np.asarray, (tw, tr, io))
        print(f"| {d:g} | {len(tr)} | {tr.mean():.2f} | {tw.mean() / tr.mean():.2f} | {correlation(tw, tr):.2f} | "
              f"{io.mean() / tr.mean():.2f} | {correlation(io, tr):.2f} |")


if __name__ == "__main__":
    main()

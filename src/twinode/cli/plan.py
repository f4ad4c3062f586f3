"""twinode-plan: rank candidate dose plans on the twin, or optimise doses within safety bounds.

    twinode-plan --twin twin.pt --history patient.csv|MEDS_DIR [--subject ID] --candidates plans.yaml [--horizon 6]
    twinode-plan --twin twin.pt --history patient.csv --optimise [--dose InsulinBolus --max-dose 10 --min-spacing 2]
                 [--max-total 15] [--base base.yaml]

Objective (over --horizon hours on --target): mean over sampled futures of the share of
time in [--low, --high] minus --hypo-penalty times the share below --low. The target, its
range and the safety bounds come from the twin's metadata (its FeatureSpec's target_range,
max_dose, min_spacing_h) where it records them; flags override them, and where neither gives
a value the command says which flags it needs and exits 2.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections import Counter

import torch

from twinode.apps import command_line
from twinode.apps.history_options import add_history_args, read_history_args, report_history

EXAMPLE = """twinode-plan --twin twin.pt --history patient.csv --candidates plans.yaml --low 70 --high 180 --out ranked.json
twinode-plan --twin twin.pt --history patient.csv --optimise --dose InsulinBolus --max-dose 10 --min-spacing 2"""


def build_parser():
    p = command_line.parser("twinode-plan", __doc__, EXAMPLE)
    command_line.add_twin(p)
    command_line.add_sha256(p)
    add_history_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--candidates", help="YAML/JSON: list of {label, doses: [{name, time_h, amount, duration_h}]}")
    g.add_argument("--optimise", action="store_true", help="search doses of --dose within the safety bounds")
    p.add_argument("--target", default=None, help="measurement to steer (default: the twin's measurement with a "
                   "target range, or its only measurement)")
    p.add_argument("--low", type=float, default=None, help="lower end of the target range (default: the twin's target_range)")
    p.add_argument("--high", type=float, default=None, help="upper end of the target range (default: the twin's target_range)")
    p.add_argument("--hypo-penalty", type=float, default=3.0, help="weight of the time below --low (default 3)")
    p.add_argument("--horizon", type=float, default=6.0, help="hours scored after the history (default 6)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dose", default=None, help="--optimise: the intervention to dose (default: the twin's intervention "
                   "with a max_dose, or its only one)")
    p.add_argument("--max-dose", type=float, default=None, help="--optimise: largest single dose (default: the twin's max_dose)")
    p.add_argument("--min-spacing", type=float, default=None, help="--optimise: hours between doses (default: the twin's "
                   "min_spacing_h)")
    p.add_argument("--max-total", type=float, default=None)
    p.add_argument("--increment", type=float, default=0.05)
    p.add_argument("--base", default=None, help="--optimise: a candidates file whose first plan is always given (e.g. a meal)")
    command_line.add_outputs(p, "JSON with the ranked plans", "PNG of the history and each plan's band on the target")
    return p


def _args(argv):
    p = build_parser()
    a = command_line.parse(p, argv)
    if not 0 < a.horizon <= 72:
        p.error(f"--horizon must be in (0, 72] hours, got {a.horizon}")
    if a.samples < 2:
        p.error("--samples must be >= 2")
    return a


def run(a) -> int:
    from twinode.apps.candidates import read_candidates
    from twinode.apps.plan_defaults import resolve_dose_bounds, resolve_target
    from twinode.apps.planning import Objective, SafetyBounds, optimise_plan, rank_plans
    from twinode.apps.twin_files import load_checked_model
    from twinode.apps.outputs import PLOT_SUFFIXES, check_outputs
    from twinode.export.inputs import bolus_rows

    check_outputs({"--out": (a.out, (".json",)), "--plot": (a.plot, PLOT_SUFFIXES)},
                  {"--history": a.history, "--candidates": a.candidates, "--base": a.base, "--twin": a.twin})
    with tempfile.TemporaryDirectory() as tmp:
        twin, meta, integrity = load_checked_model(a.twin, a.tracking_uri, tmp, a.sha256)
    tgt = resolve_target(meta, a.target, a.low, a.high)
    dosing = resolve_dose_bounds(meta, a.dose, a.max_dose, a.min_spacing) if a.optimise else None
    target = tgt.name
    h = read_history_args(a, meta, "twinode-plan")
    report_history(h)
    hist = (h.times, h.values, h.mask, h.static)
    past = h.doses_until(h.anchor + a.horizon)
    notes: Counter = Counter()

    def candidates(path):  # plans read by the reader's bolus rule, as twinode-predict reads them
        return [(label, bolus_rows(doses, meta, notes)) for label, doses in read_candidates(path, meta, h.anchor)]

    obj = Objective(tgt.channel, tgt.low, tgt.high, a.hypo_penalty, a.horizon)
    if dosing is not None:  # torch.jit.Error from the twin: one error line (apps.command_line)
        base = candidates(a.base)[0][1] if a.base else torch.zeros(0, 4)
        bounds = SafetyBounds(dosing.channel, dosing.max_dose, dosing.min_spacing_h, a.max_total, a.increment)
        best, how = optimise_plan(twin, hist, past, base, obj, bounds, num_samples=a.samples, seed=a.seed)
        ranked = [best]
        print(f"optimised by {how}", file=sys.stderr)
    else:
        ranked = rank_plans(twin, hist, past, candidates(a.candidates), obj, a.samples, a.seed)
    print(integrity.statement(), file=sys.stderr)
    print(tgt.describe(), file=sys.stderr)
    if dosing is not None:
        print(dosing.describe(), file=sys.stderr)
    if notes:
        print(f"plans adjusted by the reading rules: {dict(notes)}", file=sys.stderr)
    inter = [f["name"] for f in meta["interventions"]]
    rows = [{"rank": k + 1, "label": s.label, "score": s.score, "time_in_range": s.time_in_range, "time_below": s.time_below,
             "p_hypo": s.p_hypo, "doses": [{"name": inter[int(d[1])], "time_h": d[0], "amount": round(d[2], 4), "duration_h": d[3]}
                                           for d in s.doses.tolist()]} for k, s in enumerate(ranked)]
    for r in rows:
        print(f"{r['rank']:>2}  {r['label']:<20} score {r['score']:+.3f}  TIR {100 * r['time_in_range']:5.1f}%  "
              f"below {100 * r['time_below']:4.1f}%  P(hypo) {r['p_hypo']:.2f}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"target": target, "objective": vars(obj), "plans": rows}, fh, indent=1)
    if a.plot:
        from twinode.apps.plots import log_plot, plot_plans

        d = obj.channel
        seen = h.mask[:, d] > 0
        plot_plans(a.plot, h.times[seen].numpy(), h.values[seen, d].numpy(), ranked, target,
                   meta["measurements"][d].get("unit", ""), (tgt.low, tgt.high))
        log_plot(a.plot, a.tracking_uri, a.run_id)
    return 0


def main(argv: list[str] | None = None) -> None:
    command_line.run_and_exit(run, _args(argv))


if __name__ == "__main__":
    main()

"""twinode-plan: rank candidate dose plans on the twin, or optimise doses within safety bounds.

    twinode-plan --model twin.pt --history patient.csv|MEDS_DIR [--subject ID] --candidates plans.yaml [--horizon 6]
    twinode-plan --model twin.pt --history patient.csv --optimise --dose InsulinBolus \
                 --max-dose 10 --min-spacing 2 [--max-total 15] [--base base.yaml]

Objective (over --horizon hours on --target): mean over sampled futures of the share of
time in [--low, --high] minus --hypo-penalty times the share below --low.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter

import torch

from twinode.cli.exits import run_and_exit
from twinode.apps.history_options import add_history_args, read_history_args, report_history
from twinode.errors import DataError


def _args(argv):
    p = argparse.ArgumentParser(prog="twinode-plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    add_history_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--candidates", help="YAML/JSON: list of {label, doses: [{name, time_h, amount, duration_h}]}")
    g.add_argument("--optimise", action="store_true", help="search doses of --dose within the safety bounds")
    p.add_argument("--target", default=None, help="measurement to steer (default: the first)")
    p.add_argument("--low", type=float, default=70.0)
    p.add_argument("--high", type=float, default=180.0)
    p.add_argument("--hypo-penalty", type=float, default=3.0)
    p.add_argument("--horizon", type=float, default=6.0)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dose", default=None, help="--optimise: the intervention to dose")
    p.add_argument("--max-dose", type=float, default=None)
    p.add_argument("--min-spacing", type=float, default=None, help="hours between doses")
    p.add_argument("--max-total", type=float, default=None)
    p.add_argument("--increment", type=float, default=0.05)
    p.add_argument("--base", default=None, help="--optimise: a candidates file whose first plan is always given (e.g. a meal)")
    p.add_argument("--out", default=None, help="JSON with the ranked plans")
    p.add_argument("--plot", default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--run-id", default=None)
    a = p.parse_args(argv)
    if not 0 < a.horizon <= 72:
        p.error(f"--horizon must be in (0, 72] hours, got {a.horizon}")
    if a.samples < 2:
        p.error("--samples must be >= 2")
    if a.optimise and (a.dose is None or a.max_dose is None or a.min_spacing is None):
        p.error("--optimise needs --dose, --max-dose and --min-spacing")
    return a


def run(a) -> int:
    from twinode.apps.candidates import read_candidates
    from twinode.apps.planning import Objective, SafetyBounds, optimise_plan, rank_plans
    from twinode.apps.twin_files import load_model
    from twinode.export.inputs import bolus_rows

    with tempfile.TemporaryDirectory() as tmp:
        twin, meta = load_model(a.model, a.tracking_uri, tmp)
    names = [m["name"] for m in meta["measurements"]]
    target = a.target or names[0]
    if target not in names:
        raise DataError(f"--target {target!r} is not a measurement of this twin; it has {names}")
    h = read_history_args(a, meta, "twinode-plan")
    report_history(h)
    hist = (h.times, h.values, h.mask, h.static)
    past = h.doses_until(h.anchor + a.horizon)
    notes: Counter = Counter()

    def candidates(path):  # plans read by the reader's bolus rule, as twinode-predict reads them
        return [(label, bolus_rows(doses, meta, notes)) for label, doses in read_candidates(path, meta, h.anchor)]

    obj = Objective(names.index(target), a.low, a.high, a.hypo_penalty, a.horizon)
    try:
        if a.optimise:
            inter = [f["name"] for f in meta["interventions"]]
            if a.dose not in inter:
                raise DataError(f"--dose {a.dose!r} is not an intervention of this twin; it has {inter}")
            base = candidates(a.base)[0][1] if a.base else torch.zeros(0, 4)
            bounds = SafetyBounds(inter.index(a.dose), a.max_dose, a.min_spacing, a.max_total, a.increment)
            best, how = optimise_plan(twin, hist, past, base, obj, bounds, num_samples=a.samples, seed=a.seed)
            ranked = [best]
            print(f"optimised by {how}", file=sys.stderr)
        else:
            ranked = rank_plans(twin, hist, past, candidates(a.candidates), obj, a.samples, a.seed)
    except torch.jit.Error as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DataError(f"the twin refused the request: {lines[-1] if lines else exc}") from None
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
        from twinode.apps.plots import log_figure, plot_plans

        d = obj.channel
        seen = h.mask[:, d] > 0
        plot_plans(a.plot, h.times[seen].numpy(), h.values[seen, d].numpy(), ranked, target,
                   meta["measurements"][d].get("unit", ""), (a.low, a.high))
        if log_figure(a.plot, a.tracking_uri, a.run_id):
            print(f"logged {a.plot} to MLflow run {a.run_id}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> None:
    run_and_exit(run, _args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()

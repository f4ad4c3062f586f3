"""Counterfactual what-if evaluation of a glucose twin on a simulated cohort.

For each held-out subject: history = factual CGM up to the branch (hour 18), plan = the
factual insulin or one of the alternative arms (no bolus, double bolus, basal suspended,
double basal) from there; the twin's 6-h forecast is scored against the simulator's
noise-free truth, next to the same twin blind to the plan change (given the factual plan on
every arm), last observation carried forward, and the bolus-calculator rule (the last reading
plus -CF x the changed insulin that has acted; twinode.evaluation.bolus_rule). Prints the full
table, then effect and 2-h errors as ratios to the plan-blind and LOCF errors.

    .venv/bin/python scripts/eval_counterfactual.py --twin out/twin.pt --cohort COHORT_DIR \
        [--spec glucose] [--out results.json] [--time-course]

COHORT_DIR is what `twinode-data simulate glucose --patients N --days 1 --seed S --out DIR`
writes, or the cache folder experiment=glucose trains on
(<cache_dir>/glucose_sim/n<N>_d1_s<S>_v2). Effect errors are also given against the truth clamped to the
sensor's range (39-400 mg/dL), with the floor that range sets for any forecaster.
"""

import argparse
import json
import sys

import torch

from twinode.data.spec_files import load_spec
from twinode.data.simulators.glucose_eval import effect_time_course, forecast_arms, markdown, score, summary_markdown
from twinode.errors import TwinodeError
from twinode.export.torchscript import load_twin


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--twin", required=True, help="exported twin.pt")
    ap.add_argument("--cohort", required=True, help="simulated cohort folder with counterfactual/")
    ap.add_argument("--spec", default="glucose", help="configs/data/<NAME>.yaml the twin was trained with")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--time-course", action="store_true",
                    help="also print the twin's effect hour by hour against the truth (mean, RMSE, correlation, slope)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        twin, meta = load_twin(args.twin)
        arms = forecast_arms(twin, args.cohort, load_spec(args.spec))
        rows = score(arms)
    except TwinodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(markdown(rows))
    print(summary_markdown(rows))
    if args.time_course:
        print(effect_time_course(arms))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"twin": args.twin, "cohort": args.cohort, "run_id": meta.get("training_run_id"), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

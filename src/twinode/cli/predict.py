"""twinode-predict: forecast one patient under one or more treatment plans ("what if").

    twinode-predict --twin twin.pt|models:/NAME@ALIAS --history FILE|MEDS_DIR [--subject ID] [--time-origin T]
                    --plan FILE [--plan FILE2 ...] --horizon H --out forecast.parquet [--plot forecast.png]

The model is loaded with TorchScript only (no unpickling) and its weights are checked
against the sha256 in its metadata. Output: long format, one row per (plan, time_h,
measurement) with the predictive mean and a 5-95% interval from sampled trajectories.
The history is read by the rules the twin was trained with (docs/export.md, "Reading events").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from twinode.apps import command_line
from twinode.apps.twin_files import load_checked_model
from twinode.apps.history_options import add_history_args, read_history_args, report_history
from twinode.errors import DataError


EXAMPLE = """twinode-predict --twin outputs/train/runs/<time>/twin.pt --history patient.csv \\
    --plan vaso.yaml --plan no_vaso.yaml --horizon 12 --out forecast.parquet --plot forecast.png"""


def build_parser():
    p = command_line.parser("twinode-predict", __doc__, EXAMPLE)
    command_line.add_twin(p)
    command_line.add_sha256(p)
    add_history_args(p)
    p.add_argument("--plan", action="append", default=[], help="YAML/JSON list of future doses (name, time_h, amount, duration_h); repeat to compare")
    p.add_argument("--horizon", type=float, required=True, help="hours after the last observation")
    p.add_argument("--step", type=float, default=1.0, help="hours between forecast points (default 1)")
    p.add_argument("--out", required=True, help="output .parquet (or .csv)")
    p.add_argument("--plot", default=None, help="optional .png: one panel per measurement, a line per plan, past and planned doses marked")
    p.add_argument("--samples", type=int, default=200, help="sampled trajectories for the interval (default 200)")
    p.add_argument("--seed", type=int, default=0)
    command_line.add_tracking_uri(p)
    return p


def _args(argv):
    p = build_parser()
    a = command_line.parse(p, argv)
    if not 0 < a.horizon <= 10000:
        p.error(f"--horizon must be in (0, 10000] hours, got {a.horizon}")
    if not 0 < a.step <= a.horizon:
        p.error(f"--step must be in (0, horizon], got {a.step}")
    if a.samples < 2:
        p.error("--samples must be >= 2")
    return a


def _call(what: str, fn, *args):
    try:
        with torch.inference_mode():
            return fn(*args)
    except torch.jit.Error as exc:  # the twin's own argument checks: keep their one-line message
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DataError(f"{what}: {lines[-1] if lines else exc}") from None


def _table(frame, horizon: float, meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    import polars as pl

    plans = frame["plan"].unique(maintain_order=True).to_list()
    times = frame["time_h"].unique(maintain_order=True).to_list()
    shown = sorted({times[round(k * (len(times) - 1) / 4)] for k in range(5)})
    table = Table(title="twinode forecast: mean [5%, 95%] per plan")
    table.add_column("time_h", justify="right")
    table.add_column("measurement")
    for p in plans:
        table.add_column(p, justify="right")
    for t in shown:
        for m in meta["measurements"]:
            cells = []
            for p in plans:
                row = frame.filter((pl.col("plan") == p) & (pl.col("time_h") == t) & (pl.col("name") == m["name"])).row(0, named=True)
                cells.append(f"{row['mean']:.2f} [{row['q05']:.2f}, {row['q95']:.2f}]")
            table.add_row(f"{t:g}", f"{m['name']} ({m.get('unit', '')})", *cells)
    Console().print(table)


def run(a) -> None:
    import polars as pl

    from twinode.export.inputs import frame_rows, read_plan

    from twinode.apps.outputs import PLOT_SUFFIXES, TABLE_SUFFIXES, check_outputs
    from twinode.limits import check_forecast

    check_outputs({"--out": (a.out, TABLE_SUFFIXES), "--plot": (a.plot, PLOT_SUFFIXES)},
                  {"--history": a.history, "--plan": a.plan, "--twin": a.twin})
    with tempfile.TemporaryDirectory() as tmp:
        twin, meta, integrity = load_checked_model(a.twin, a.tracking_uri, tmp, a.sha256)
    print(integrity.statement())
    check_forecast(int(round(a.horizon / a.step)) + 1, a.samples, len(meta["measurements"]), step=a.step)
    history = read_history_args(a, meta, "twinode-predict")
    plans = [read_plan(p, meta, history.anchor) for p in a.plan] or []
    if not plans:
        from twinode.export.inputs import Plan

        plans = [Plan("no_plan", torch.zeros(0, 4))]
    labels = [p.label for p in plans]
    if len(set(labels)) != len(labels):
        raise DataError(f"plans need distinct labels (file stems or 'label:'), got {labels}")
    n = int(round(a.horizon / a.step))
    query = history.anchor + a.step * torch.arange(0, n + 1, dtype=torch.float32)
    frames = []
    past = history.doses_until(float(query.max()))
    # Twins that export posterior/decode encode the history once for every plan.
    post = _call("history", twin.posterior, history.times, history.values, history.mask, history.static) \
        if hasattr(twin, "posterior") else None
    for plan in plans:
        if plan.notes:
            print(f"plan {plan.label}: {dict(plan.notes)}", file=sys.stderr)
        doses = torch.cat([past, plan.doses])
        doses = doses[torch.argsort(doses[:, 0], stable=True)]
        args = (history.times, history.values, history.mask, history.static, doses, query)
        if post is not None:
            mean, _ = _call(f"plan {plan.label}", twin.decode, post, doses, query)
        else:
            mean, _ = _call(f"plan {plan.label}", twin.forecast, *args)
        samples = _call(f"plan {plan.label}", twin.sample, *args, a.samples, a.seed)
        frames.append(frame_rows(plan.label, query, mean, samples, meta, 0.05, 0.95))
    frame = pl.concat(frames)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(out) if out.suffix == ".csv" else frame.write_parquet(out)
    _table(frame, a.horizon, meta)
    if "risk" in meta.get("methods", []):
        p = _call("risk", twin.risk, history.times, history.values, history.mask, history.static, history.doses)
        print(f"risk of {', '.join(meta.get('outcomes', [])) or 'the outcome'} (from the history): {float(p):.3f}"
              + risk_caveat(meta.get("risk_validation")))
    report_history(history)
    if a.plot:
        from twinode.apps.plots import plot_forecast

        plot_forecast(a.plot, frame, history, meta, plans)
        print(f"plot: {a.plot}")
    print(f"forecast: {out} ({frame.height} rows, plans: {', '.join(labels)})")


MIN_RISK_AUROC, MIN_RISK_POSITIVES = 0.6, 20


def risk_caveat(validation: dict | None) -> str:
    """A warning to print beside a risk whose head was not shown to work on validation data."""
    if not isinstance(validation, dict) or validation.get("auroc") is None:
        return "  (not validated: this twin records no validation AUROC for its risk head)"
    auroc, pos = float(validation["auroc"]), int(validation.get("positives") or 0)
    if auroc < MIN_RISK_AUROC or pos < MIN_RISK_POSITIVES:
        return (f"  (unreliable: validation AUROC {auroc:.2f} on {pos} positives; "
                f"needs >= {MIN_RISK_AUROC} on >= {MIN_RISK_POSITIVES})")
    return f"  (validation AUROC {auroc:.2f} on {pos} positives)"


def main(argv: list[str] | None = None) -> None:
    command_line.run_and_exit(run, _args(argv))


if __name__ == "__main__":
    main()

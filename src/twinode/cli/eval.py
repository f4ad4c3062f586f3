"""twinode-eval: score a trained twin on the held-out split next to the baselines.

    twinode-eval --checkpoint best.ckpt [--protocol forecast --protocol imputation ...]
                 [--data-dir DIR] [--out DIR] [--plot eval.png] [--tracking-uri sqlite:///mlflow.db]
    twinode-eval --twin twin.pt [--sha256 HEX] --override experiment=physionet2012 --override paths.data_dir=DIR

Protocols (twinode.evaluation.protocols): forecast, imputation, interpolation; every one
scores the twin, LOCF, the subject's mean, the population mean, linear interpolation and
the decay-to-mean baseline (fitted on the train split) on the same targets, per variable
and pooled, on the min-max scale of the train and tuning splits. Mortality (AUROC/AUPRC with
positives and bootstrap intervals) next to logistic regression on summary features.
Writes eval.md and eval.json; --plot draws, from the same results, each variable's MSE over
LOCF's for the twin and the strongest baselines (forecast and imputation; log axis, LOCF at 1)
and the twin's 90 % coverage by time since the last history point
(twinode.evaluation.figures). With --tracking-uri the metrics, eval.md and the figure go to
MLflow, as a run nested under the twin's training run when the store has it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from twinode.apps import command_line
from twinode.apps.outputs import PLOT_SUFFIXES
from twinode.errors import DataError
from twinode.evaluation.protocols import PROTOCOLS


def _log_mlflow(uri: str, results: dict, artifacts: list[Path]) -> str:
    import mlflow

    from twinode.tracking.mlflow_store import ensure_store

    ensure_store(uri)
    client = mlflow.tracking.MlflowClient(uri)
    parent = results["meta"].get("mlflow_run_id")
    tags = {"twinode.evaluated": results["meta"]["source"]}
    try:
        exp_id = client.get_run(parent).info.experiment_id if parent else None
        tags["mlflow.parentRunId"] = parent
    except Exception:  # the training run lives in another store: a run of its own
        exp_id = None
    if exp_id is None:
        tags.pop("mlflow.parentRunId", None)
        exp = client.get_experiment_by_name("twinode-eval")
        exp_id = exp.experiment_id if exp else client.create_experiment("twinode-eval")
    run = client.create_run(exp_id, tags=tags, run_name="twinode-eval")
    for proto, res in results["protocols"].items():
        for name, r in res.items():
            for key in ("mse_minmax_per_variable", "mse_minmax_pooled", "mse_norm", "nll", "coverage90"):
                if key in r:
                    client.log_metric(run.info.run_id, f"{proto}/{name}/{key}", r[key])
    for name, r in results["risk"].items():
        for key in ("auroc", "auprc"):
            if key in r:
                client.log_metric(run.info.run_id, f"risk/{name}/{key}", r[key])
    for path in artifacts:
        client.log_artifact(run.info.run_id, str(path))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _body(args) -> int:
    from twinode.apps.outputs import check_outputs
    from twinode.evaluation.figures import SKIPPED
    from twinode.evaluation.protocols import evaluate_twin
    from twinode.evaluation.report import markdown
    from twinode.evaluation.setup import from_checkpoint, from_twin_file

    protocols = tuple(args.protocol) if args.protocol else tuple(PROTOCOLS)
    check_outputs({"--plot": (args.plot, PLOT_SUFFIXES)}, {"--checkpoint": args.checkpoint, "--twin": args.twin})
    if args.plot and set(protocols) <= set(SKIPPED):
        raise DataError(f"--plot draws the forecast and imputation protocols; --protocol {' '.join(protocols)} "
                        "scores neither", hint="add --protocol forecast or --protocol imputation")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.twin is not None:
        dm, twin, meta = from_twin_file(args.twin, args.override, args.data_dir, args.sha256)
    else:
        dm, twin, meta = from_checkpoint(args.checkpoint, args.data_dir, args.trust_checkpoint)
    results = evaluate_twin(twin, dm, protocols, batch_size=dm.eval_batch_size, progress=not args.quiet)
    results["meta"] = {**meta, "dataset": dm.dataset_name, "held_out_subjects": len(dm.splits["held_out"] or dm.splits["tuning"]),
                       "data_fingerprint_now": dm.fingerprint, "decoder": "anchored" if twin.anchored else "latent",
                       "variational": bool(twin.variational), "wall_s": round(time.perf_counter() - start, 1)}
    md = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.md").write_text(md)
    plot = None
    if args.plot:
        from twinode.evaluation.figures import eval_figure

        plot = eval_figure(results, args.plot)
    if args.tracking_uri:
        artifacts = [args.out / "eval.md"] + ([plot] if plot is not None else [])
        results["meta"]["eval_run_id"] = _log_mlflow(args.tracking_uri, results, artifacts)
    (args.out / "eval.json").write_text(json.dumps(results, indent=2))
    print(md)
    print(f"written: {args.out / 'eval.md'}, {args.out / 'eval.json'}")
    if plot is not None:
        print(f"plot: {plot}")
    return 0


EXAMPLE = """twinode-eval --checkpoint outputs/train/runs/<time>/checkpoints/last.ckpt --out eval/ --plot eval/eval.png --tracking-uri sqlite:///mlflow.db
twinode-eval --twin twin.pt --override experiment=physionet2012 --override paths.data_dir=data --out eval/"""


def build_parser():
    p = command_line.parser("twinode-eval", __doc__, EXAMPLE)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="Lightning .ckpt written by twinode-train")
    src.add_argument("--twin", type=Path, help="exported twin.pt (give the data with --override)")
    command_line.deprecated_alias(src, "--model", "--twin", "twin", type=Path)
    command_line.add_sha256(p)
    p.add_argument("--override", action="append", default=[], help="train-config override for --twin, e.g. experiment=physionet2012")
    p.add_argument("--protocol", action="append", choices=tuple(PROTOCOLS), help="repeatable; default: all")
    p.add_argument("--data-dir", help="dataset directory, when it moved since training")
    p.add_argument("--out", type=Path, default=Path("."), help="directory for eval.md and eval.json")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw the results: per-variable MSE / LOCF for the twin and the strongest baselines "
                   "(forecast, imputation) and the twin's 90 %% coverage by horizon; " + ", ".join(PLOT_SUFFIXES))
    p.add_argument("--tracking-uri", metavar="URI", help="also log the metrics to this MLflow store (nested under the training run)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that holds more than tensors (only from a source you trust)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> None:
    command_line.run(build_parser(), _body, argv)


def run(argv: list[str] | None = None) -> int:
    """:func:`main` as a function that returns the exit code instead of exiting."""
    return command_line.exit_code(main, [] if argv is None else argv)


if __name__ == "__main__":
    main()

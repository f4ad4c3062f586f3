"""twinode-eval: score a trained twin on the held-out split next to the baselines.

    twinode-eval --checkpoint best.ckpt [--task interpolation|extrapolation|forecast]
                 [--data-dir DIR] [--out DIR] [--tracking-uri sqlite:///mlflow.db]
    twinode-eval --twin twin.pt --override experiment=physionet2012 --override paths.data_dir=DIR ...

The checkpoint carries the resolved training config, so the data module and the twin are
rebuilt exactly as trained. An exported ``twin.pt`` carries no data config: the data comes
from the train config composed with ``--override``s, and must normalise exactly as the
twin's metadata says (checked). Both paths run the same batched twin methods. Forecast metrics are in normalised units (z-scores after the
FeatureSpec transform) and, as the Latent ODE paper reports them, as MSE on channels
min-max scaled to [0, 1] with the train split's range. Writes ``eval.md`` and ``eval.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from twinode.errors import ConfigError, ExportError, TwinodeError

FORECASTERS = ("twin", "locf", "history_mean", "population_mean")


class Accumulator:
    """Sums over observed target entries for one forecaster."""

    def __init__(self):
        self.abs = self.sq = self.sq_mm = self.nll = self.hits = 0.0
        self.count = 0.0
        self.has_std = False
        # Per channel, original units: sums of |error| and error^2, and counts.
        self.ch_abs = self.ch_sq = self.ch_count = 0.0

    def update(self, pred, target, mask, scale, log_std=None):
        from twinode.models.decoders import gaussian_nll
        from twinode.training.metrics import interval_hits, masked_abs_error, masked_sq_error

        self.abs += float(masked_abs_error(pred, target, mask)[0])
        self.sq += float(masked_sq_error(pred, target, mask)[0])
        self.sq_mm += float(masked_sq_error(scale(pred, clip=True), scale(target), mask)[0])
        self.count += float(mask.sum())
        err = (scale.original(pred) - scale.original(target)) * mask
        self.ch_abs = self.ch_abs + err.abs().flatten(0, 1).sum(0)
        self.ch_sq = self.ch_sq + err.pow(2).flatten(0, 1).sum(0)
        self.ch_count = self.ch_count + mask.flatten(0, 1).sum(0)
        if log_std is not None:
            self.has_std = True
            self.nll += float(gaussian_nll(target, mask, pred, log_std)[0])
            self.hits += float(interval_hits(pred, log_std, target, mask))

    def result(self, names: list[str]) -> dict:
        n = max(self.count, 1.0)
        out = {"mae": self.abs / n, "mse": self.sq / n, "mse_minmax": self.sq_mm / n, "n_targets": self.count}
        cnt = torch.as_tensor(self.ch_count).clamp(min=1.0)
        mae, rmse = torch.as_tensor(self.ch_abs) / cnt, (torch.as_tensor(self.ch_sq) / cnt).sqrt()
        out["per_variable"] = {name: {"mae": float(mae[i]), "rmse": float(rmse[i]), "n": float(torch.as_tensor(self.ch_count)[i])}
                               for i, name in enumerate(names)}
        if self.has_std:
            out.update(nll=self.nll / n, coverage90=self.hits / n)
        return out


def _load(checkpoint: Path, task: str | None, data_dir: str | None):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from twinode.training.pipeline import build_twin

    if not checkpoint.is_file():
        raise ExportError(f"checkpoint not found: {checkpoint}")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
        meta, state = ckpt["twinode"], ckpt["state_dict"]
    except Exception as exc:
        raise ExportError(f"{checkpoint} is not a twinode Lightning checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass the .ckpt written by twinode-train") from exc
    cfg = OmegaConf.create(meta["config"])
    if task:
        cfg.data.task = task
    if data_dir:
        if "path" not in cfg.data.source:
            raise ConfigError("--data-dir", data_dir, hint="this checkpoint's data source has no path")
        cfg.data.source.path = data_dir
    dm = instantiate(cfg.data)
    dm.setup("test")
    twin = build_twin(cfg, dm.dims, dm.spec)
    twin.load_state_dict({k[len("twin."):]: v for k, v in state.items() if k.startswith("twin.")})
    twin.eval()
    return cfg, dm, twin, meta


def _load_exported(path: Path, overrides: list[str], task: str | None, data_dir: str | None):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from twinode.cli.config_dir import config_dir
    from twinode.errors import DataError
    from twinode.export.torchscript import load_twin

    module, meta = load_twin(path)
    with initialize_config_dir(config_dir=str(Path(config_dir()).resolve()), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides) + ["paths.output_dir=."])
    if task:
        cfg.data.task = task
    if data_dir:
        cfg.data.source.path = data_dir
    dm = instantiate(cfg.data)
    dm.setup("test")
    mine, theirs = dm.normaliser.as_dict(), meta.get("normalisation", {})
    for key, value in mine.items():
        if key not in theirs or not np.allclose(value, theirs[key], rtol=1e-4, atol=1e-6):
            raise DataError(f"the data does not normalise as {path} was trained ({key} differs)",
                            file=str(path), hint="pass the --override settings of the training run (experiment, data)")
    return cfg, dm, module.twin, {"data_fingerprint": meta.get("data_fingerprint")}


def _minmax(dm):
    from twinode.training.metrics import MinMaxScale

    train = dm.splits["train"]
    values = torch.from_numpy(np.concatenate([r.values for r in train]))
    mask = torch.from_numpy(np.concatenate([r.mask for r in train]))
    norm = dm.normaliser
    log1p = torch.tensor([f.transform == "log1p" for f in dm.spec.measurements])
    return MinMaxScale.fit(values, mask, torch.from_numpy(norm.meas_mean), torch.from_numpy(norm.meas_std), log1p)


def _risk_scores(y, p):
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    if y.numel() == 0 or y.min() == y.max():
        return {}
    return {"auroc": float(binary_auroc(p, y.long())), "auprc": float(binary_average_precision(p, y.long()))}


def evaluate(checkpoint: Path | None, task: str | None = None, data_dir: str | None = None,
             twin_path: Path | None = None, overrides: tuple[str, ...] = ()) -> dict:
    from twinode.data.collate import collate_windows
    from twinode.data.windows import ForecastWindows
    from twinode.models.baselines import LogisticRisk, baseline_forecasts, summary_features

    if twin_path is not None:
        cfg, dm, twin, meta = _load_exported(twin_path, list(overrides), task, data_dir)
    else:
        cfg, dm, twin, meta = _load(checkpoint, task, data_dir)
    scale = _minmax(dm)
    acc = {name: Accumulator() for name in FORECASTERS}
    labels, twin_risk, feats = [], [], []
    with torch.no_grad():
        for b in dm.test_dataloader():
            s_emb = twin.embed_static(b.static, b.static_m)
            z, _ = twin.encode(b.hist_t, b.hist_x, b.hist_m, b.hist_len, s_emb)
            mean, log_std = twin.decode_at(z, b.anchor, b.tgt_t, b.doses, s_emb)
            acc["twin"].update(mean, b.tgt_x, b.tgt_m, scale, log_std)
            for name, pred in baseline_forecasts(b.hist_x, b.hist_m, b.tgt_t.shape[1]).items():
                acc[name].update(pred, b.tgt_x, b.tgt_m, scale)
            known = torch.isfinite(b.outcome)
            labels.append(b.outcome[known])
            feats.append(summary_features(b.hist_x, b.hist_m, b.static, b.static_m)[known])
            if twin.has_risk:
                twin_risk.append(torch.sigmoid(twin.risk_logit(z, s_emb))[known])
    names = [f.name for f in dm.spec.measurements]
    results = {"forecast": {k: v.result(names) for k, v in acc.items()}, "risk": {}, "units": {f.name: f.unit for f in dm.spec.measurements}}
    y = torch.cat(labels)
    if twin_risk:
        results["risk"]["twin"] = _risk_scores(y, torch.cat(twin_risk))
    # The logistic baseline sees the same history windows of the train split.
    train_w = ForecastWindows(dm.splits["train"], dm.horizon_h, dm.spec.window_hours, dm.test_windows.mode)
    tb = collate_windows([train_w[i] for i in range(len(train_w))])
    known = torch.isfinite(tb.outcome)
    if bool(known.any()) and y.numel():
        model = LogisticRisk().fit(summary_features(tb.hist_x, tb.hist_m, tb.static, tb.static_m)[known], tb.outcome[known])
        results["risk"]["logistic_summary"] = _risk_scores(y, model.predict_proba(torch.cat(feats)))
    results["meta"] = {"checkpoint": str(twin_path or checkpoint), "task": dm.task, "dataset": dm.dataset_name,
                       "held_out_subjects": len(dm.test_windows), "data_fingerprint": dm.fingerprint,
                       "trained_on_fingerprint": meta.get("data_fingerprint"),
                       "encoder": getattr(twin.encoder, "original_name", type(twin.encoder).__name__),
                       "variational": bool(twin.variational)}
    return results


def markdown(results: dict) -> str:
    m = results["meta"]
    lines = [f"### {m['dataset']}, task `{m['task']}`, held-out subjects: {m['held_out_subjects']}", "",
             "| forecaster | MAE (norm.) | MSE (norm.) | MSE (min-max [0,1]) | NLL | 90 % coverage |",
             "|---|---|---|---|---|---|"]
    for name, r in results["forecast"].items():
        nll = f"{r['nll']:.3f}" if "nll" in r else "-"
        cov = f"{r['coverage90']:.3f}" if "coverage90" in r else "-"
        lines.append(f"| {name} | {r['mae']:.4f} | {r['mse']:.4f} | {r['mse_minmax']:.3e} | {nll} | {cov} |")
    per = {k: r["per_variable"] for k, r in results["forecast"].items()}
    lines += ["", "Per variable, original units (MAE / RMSE):", "",
              "| variable | unit | n | " + " | ".join(per) + " |", "|---|---|---|" + "---|" * len(per)]
    for name, unit in results["units"].items():
        cells = [f"{per[k][name]['mae']:.3g} / {per[k][name]['rmse']:.3g}" for k in per]
        lines.append(f"| {name} | {unit} | {int(per['twin'][name]['n'])} | " + " | ".join(cells) + " |")
    if results["risk"]:
        lines += ["", "| mortality model | AUROC | AUPRC |", "|---|---|---|"]
        for name, r in results["risk"].items():
            if r:
                lines.append(f"| {name} | {r['auroc']:.3f} | {r['auprc']:.3f} |")
    return "\n".join(lines) + "\n"


def _log_mlflow(uri: str, results: dict, md_path: Path) -> str:
    import mlflow

    from twinode.tracking.mlflow_store import ensure_store

    ensure_store(uri)
    client = mlflow.tracking.MlflowClient(uri)
    exp = client.get_experiment_by_name("twinode-eval") or client.get_experiment(client.create_experiment("twinode-eval"))
    run = client.create_run(exp.experiment_id, tags={"twinode.checkpoint": results["meta"]["checkpoint"],
                                                      "twinode.task": results["meta"]["task"]})
    for name, r in results["forecast"].items():
        for k, v in r.items():
            if k == "per_variable":
                for var, vm in v.items():
                    for m_name in ("mae", "rmse"):
                        client.log_metric(run.info.run_id, f"{name}/{var}/{m_name}", vm[m_name])
            else:
                client.log_metric(run.info.run_id, f"{name}/{k}", v)
    for name, r in results["risk"].items():
        for k, v in r.items():
            client.log_metric(run.info.run_id, f"{name}/{k}", v)
    client.log_artifact(run.info.run_id, str(md_path))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="twinode-eval", description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="Lightning .ckpt written by twinode-train")
    src.add_argument("--twin", type=Path, help="exported twin.pt (give the data with --override)")
    p.add_argument("--override", action="append", default=[], help="train-config override for --twin, e.g. experiment=physionet2012")
    p.add_argument("--task", choices=("forecast", "interpolation", "extrapolation"), help="default: the training task")
    p.add_argument("--data-dir", help="dataset directory, when it moved since training")
    p.add_argument("--out", type=Path, default=Path("."), help="directory for eval.md and eval.json")
    p.add_argument("--tracking-uri", help="also log the metrics to this MLflow store (experiment twinode-eval)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        start = time.perf_counter()
        results = evaluate(args.checkpoint, args.task, args.data_dir, args.twin, tuple(args.override))
        results["meta"]["wall_s"] = round(time.perf_counter() - start, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        md = markdown(results)
        (args.out / "eval.md").write_text(md)
        (args.out / "eval.json").write_text(json.dumps(results, indent=2))
        if args.tracking_uri:
            results["meta"]["mlflow_run_id"] = _log_mlflow(args.tracking_uri, results, args.out / "eval.md")
    except TwinodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(md)
    print(f"written: {args.out / 'eval.md'}, {args.out / 'eval.json'}")
    return 0


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()

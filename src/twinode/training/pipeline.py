"""The training job: config -> data -> twin -> Lightning fit -> best weights -> twin.pt -> MLflow.

Everything is built from the Hydra config with ``_target_``; the CLI only composes the
config and calls :func:`train`. Under DDP every process runs this function; only global
rank 0 creates the MLflow run, writes run files and exports, after all ranks finished.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from twinode.checkpoint import build_twin  # noqa: F401 (re-exported: twinode.training.pipeline.build_twin)
from twinode.errors import ConfigError
from twinode.export.integrity import signing_key
from twinode.export.torchscript import export_twin
from twinode.tracking.mlflow_store import ensure_store, environment_tags
from twinode.tracking.sweep import in_multirun, sweep_parent_run_id
from twinode.training.resume import resume_point, write_run_state


@dataclass
class TrainResult:
    output_dir: Path
    twin_path: Path | None
    best_checkpoint: str | None
    metrics: dict[str, float]
    run_id: str | None
    tracking_uri: str | None


def _global_rank() -> int:
    """This process's global rank (0 outside distributed runs), as Lightning set it."""
    return int(getattr(rank_zero_only, "rank", 0))


def _loggers(cfg: DictConfig, run_id: str | None = None) -> list:
    if not cfg.get("logger"):
        return []
    if "wandb" in cfg.logger and not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"  # no key: keep the run local, sync later with `wandb sync`
    loggers = []
    for name, lg_cfg in cfg.logger.items():
        if not isinstance(lg_cfg, DictConfig) or "_target_" not in lg_cfg:
            raise ConfigError(f"logger.{name}", lg_cfg, hint="each logger entry needs a _target_")
        extra = {}
        if "MLFlowLogger" in lg_cfg._target_:
            if _global_rank() == 0:  # other ranks never touch the store
                ensure_store(lg_cfg.tracking_uri, lg_cfg.get("experiment_name"), lg_cfg.get("artifact_location"))
            parent = sweep_parent_run_id()
            extra = {"run_id": run_id, "tags": {"mlflow.parentRunId": parent} if parent and not run_id else None}
            if not run_id and not lg_cfg.get("run_name"):
                # MLflow's own name generator draws from the seeded global RNG: every run would
                # get the same name. Name it from the clock and the OS's randomness instead.
                extra["run_name"] = f"{cfg.get('task_name', 'train')}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        loggers.append(instantiate(lg_cfg, **extra))
    return loggers


def _log_forecast_figure(twin, dm, output_dir: Path, mlf) -> None:
    """``forecast.png``: the trained twin on a few validation subjects, in the run's artifacts."""
    from twinode.training.figures import forecast_figure

    batch = next(iter(dm.val_dataloader()), None)
    if batch is None:
        return
    was_training = twin.training
    twin.eval()
    try:
        path = forecast_figure(twin, batch, [f.name for f in dm.spec.measurements], output_dir / "forecast.png")
    finally:
        twin.train(was_training)
    mlf.experiment.log_artifact(mlf.run_id, str(path))


def _callbacks(cfg: DictConfig, has_logger: bool = True) -> list:
    """The ``callbacks`` group's callbacks; LearningRateMonitor only when something logs
    (Lightning refuses it without a logger, e.g. under ``logger=none``)."""
    from lightning.pytorch.callbacks import LearningRateMonitor

    made = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return [c for c in made if has_logger or not isinstance(c, LearningRateMonitor)]


def train(cfg: DictConfig) -> TrainResult:
    """Run one training job. Lightning's MLflow logger sets MLFLOW_TRACKING_URI for the whole
    process; it is restored afterwards so a later job in the same process uses its own store."""
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return _train(cfg)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def _train(cfg: DictConfig) -> TrainResult:
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    signing_key()  # a malformed $TWINODE_SIGNING_KEY fails now, not at the export after training
    trust = bool(cfg.get("trust_checkpoint", False))
    start = resume_point(cfg.get("resume"), cfg.get("ckpt_path"), output_dir, trust=trust)

    dm = instantiate(cfg.data)
    dm.setup("fit")
    twin = build_twin(cfg, dm.dims, dm.spec, trust=True)  # the user's own config: their own classes may be named
    resolved = cast(dict, OmegaConf.to_container(cfg, resolve=True))
    metadata = {"config": resolved, "dims": dm.dims, "spec": dm.spec.to_dict(),
                "normaliser": dm.normaliser.as_dict(), "data_fingerprint": dm.fingerprint}
    lit = instantiate(cfg.model.lit)(twin=twin, metadata=metadata)
    if "optimizer" in cfg.model:  # model.optimizer / model.scheduler: partials for configure_optimizers
        lit.optimizer_factory = instantiate(cfg.model.optimizer) if cfg.model.optimizer is not None else None
    if "scheduler" in cfg.model:
        lit.scheduler_factory = instantiate(cfg.model.scheduler) if cfg.model.scheduler is not None else None

    loggers = _loggers(cfg, start.mlflow_run_id)
    trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=_callbacks(cfg, bool(loggers)))
    _refuse_multirun_spawn(trainer)
    rank0 = _global_rank() == 0
    mlf = next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)
    if mlf is not None and rank0:
        client, run_id = mlf.experiment, str(mlf.run_id)
        write_run_state(output_dir, run_id, str(mlf._tracking_uri))
        lit.metadata["mlflow_run_id"] = run_id  # travels in every checkpoint, for resume
        if start.resuming:
            client.set_tag(run_id, "twinode.resumed_from", start.ckpt_path)
        else:
            for key, value in {**environment_tags(cfg.paths.root_dir), "twinode.data_fingerprint": dm.fingerprint,
                               "twinode.dataset": dm.dataset_name,
                               "twinode.world_size": trainer.num_devices * trainer.num_nodes}.items():
                client.set_tag(run_id, key, value)
            (output_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            client.log_artifact(run_id, str(output_dir / "config.yaml"))
            (output_dir / "data_report.json").write_text(json.dumps(dm.report.as_dict(), indent=2))
            client.log_artifact(run_id, str(output_dir / "data_report.json"))
    if not start.resuming:  # MLflow params are write-once; a resumed run logged them already
        for lg in loggers:
            lg.log_hyperparams(_flat_params(resolved))

    trainer.fit(lit, datamodule=dm, ckpt_path=start.ckpt_path or cfg.get("ckpt_path"), weights_only=not trust)
    fit_completed = trainer.state.status == TrainerStatus.FINISHED and not trainer.interrupted

    best = getattr(trainer.checkpoint_callback, "best_model_path", None) or None
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        lit.load_state_dict(state)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if best:  # final metrics of the weights that get exported
        final = trainer.validate(lit, datamodule=dm, verbose=False)
        metrics.update({k: float(v) for k, v in (final[0] if final else {}).items()})

    trainer.strategy.barrier()  # every rank is done with the weights before rank 0 exports
    twin_path = None
    if cfg.get("export", True) and trainer.is_global_zero:
        twin_path = export_twin(
            lit.twin, dm.normaliser.as_dict(), dm.spec, output_dir / "twin.pt",
            solver={k: v for k, v in cast(dict, OmegaConf.to_container(cfg.solver, resolve=True)).items()
                    if not str(k).startswith("_")},
            run_id=mlf.run_id if mlf else None, data_fingerprint=dm.fingerprint,
            risk_validation={"auroc": metrics["val/risk_auroc"], "positives": int(metrics.get("val/risk_positives", 0))}
            if "val/risk_auroc" in metrics else None,
        )
        if mlf is not None:
            from twinode.export.integrity import TAG, read_sidecar, sidecar_path

            mlf.experiment.log_artifact(mlf.run_id, str(twin_path))
            _log_forecast_figure(lit.twin, dm, output_dir, mlf)
            mlf.experiment.log_artifact(mlf.run_id, str(sidecar_path(twin_path)))
            mlf.experiment.set_tag(mlf.run_id, TAG, read_sidecar(twin_path))
        # ---- registry: pyfunc model + registered version with an alias (twinode.tracking.registry) ----
        # Only a completed, non-debug, non-sweep run becomes the registered candidate.
        skip = registry_skip_reason(cfg, fit_completed)
        if mlf is not None and skip is None:
            from twinode.tracking.registry import model_name_for, publish_twin

            # Idempotent: resuming a finished run finds the version it registered and adds none.
            publish_twin(twin_path, run_id=str(mlf.run_id), tracking_uri=cfg.logger.mlflow.tracking_uri,
                         model_name=model_name_for(cfg.registry, dm.dataset_name), alias=cfg.registry.alias)
        elif mlf is not None:
            mlf.experiment.set_tag(mlf.run_id, REGISTRY_TAG, f"not registered: {skip}")
        # ---- end registry ----
    return TrainResult(output_dir, twin_path, best, metrics, mlf.run_id if mlf else None,
                       cfg.logger.mlflow.tracking_uri if mlf else None)


REGISTRY_TAG = "twinode.registry"  # on a run that registered nothing: why


def registry_skip_reason(cfg: DictConfig, fit_completed: bool = True) -> str | None:
    """Why this run must not register a model version (nor move its alias), or None when it may.

    A version is registered only for a completed, non-debug run with ``registry.enabled``:
    not under ``trainer.fast_dev_run`` or ``trainer.overfit_batches``, not for a run whose
    fit stopped early by an exception or interrupt, and not for a sweep trial unless
    ``registry.register_sweep_trials`` is true (register the sweep's best configuration by
    re-running it as a single run)."""
    reg = cfg.get("registry") or {}
    if not reg.get("enabled", False):
        return "registry.enabled is false"
    if OmegaConf.select(cfg, "trainer.fast_dev_run", default=False):
        return "debug run (trainer.fast_dev_run)"
    if OmegaConf.select(cfg, "trainer.overfit_batches", default=0):
        return "debug run (trainer.overfit_batches)"
    if not fit_completed:
        return "training did not complete"
    if in_multirun() and not reg.get("register_sweep_trials", False):
        return "sweep trial (registry.register_sweep_trials is false)"
    return None


def _refuse_multirun_spawn(trainer: L.Trainer) -> None:
    """Hydra multirun + Lightning-launched DDP re-runs the whole sweep in every child process
    (Lightning restarts the command line, ``-m`` included). Refuse it; on clusters the
    submitit launcher has SLURM start one process per device instead."""
    if not in_multirun():
        return
    if trainer.num_devices * trainer.num_nodes <= 1:
        return
    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is not None and env.creates_processes_externally:
        return  # SLURM / torchrun started the ranks; nothing gets re-launched
    raise ConfigError("trainer.devices", trainer.num_devices * trainer.num_nodes,
                      hint="a multirun (-m) cannot use DDP processes started by Lightning: each would re-run "
                      "the sweep. Use hydra/launcher=submitit_slurm (SLURM starts the ranks) or run each "
                      "configuration as a single run (see docs/scaling.md)")


def _flat_params(d: dict, prefix: str = "") -> dict:
    """Flatten the resolved config into MLflow params (keys joined by '.')."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, key + "."))
        elif key.startswith(("hydra.", "data.source.spec")):
            continue  # large and logged as config.yaml instead
        else:
            out[key] = v
    return out

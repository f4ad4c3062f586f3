"""One MLflow parent run per Hydra multirun; every trial is a child run under it.

:class:`SweepParentRun` is a Hydra callback (``hydra.callbacks`` in configs/hydra/default.yaml):
before any trial starts it creates the tracking store (a fresh SQLite DB must not be created
by several trials at once) and the parent run, and writes the parent's id to
``<sweep dir>/mlflow_parent.json``, where each trial finds it.
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from twinode.tracking.mlflow_store import ensure_store

PARENT_FILE = "mlflow_parent.json"


def _mlflow_cfg(config: DictConfig):
    lg = config.get("logger") or {}
    return lg.get("mlflow") if "mlflow" in lg else None


class SweepParentRun(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        mlf = _mlflow_cfg(config)
        if mlf is None:
            return
        client = ensure_store(mlf.tracking_uri, mlf.experiment_name, mlf.get("artifact_location"))  # under the store lock
        exp_id = client.get_experiment_by_name(mlf.experiment_name).experiment_id
        sweep_dir = Path(config.hydra.sweep.dir)
        run = client.create_run(exp_id, run_name=f"sweep-{sweep_dir.name}",
                                tags={"twinode.sweep_dir": str(sweep_dir.resolve())})
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps({"run_id": run.info.run_id, "tracking_uri": mlf.tracking_uri}))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / PARENT_FILE
        if path.is_file():
            state = json.loads(path.read_text())
            ensure_store(state["tracking_uri"]).set_terminated(state["run_id"], "FINISHED")


def in_multirun() -> bool:
    """True inside a trial of a Hydra multirun (a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_parent_run_id() -> str | None:
    """The parent run id when called inside a trial of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig

    if not in_multirun():
        return None
    path = Path(HydraConfig.get().sweep.dir) / PARENT_FILE
    return json.loads(path.read_text())["run_id"] if path.is_file() else None

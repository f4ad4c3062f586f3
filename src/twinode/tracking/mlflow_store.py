"""MLflow store set-up and run bookkeeping (config, versions, fingerprint, artifacts).

mlflow is imported where a store is opened, not with this module: the training pipeline imports
it, and a machine that trains or benchmarks with ``logger=none`` (a bare GPU box) needs no mlflow.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from twinode.errors import ConfigError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


LOCK_TIMEOUT_S = 300.0


def ensure_store(tracking_uri: str, experiment_name: str | None = None,
                 artifact_location: str | None = None) -> MlflowClient:
    """Create the backing store (and the experiment, when named) now, and return a client for it.

    A fresh SQLite DB is created and its schema migrated by the first client that opens it;
    two processes doing that at once (parallel trainings, a sweep) collide ("duplicate column
    name"), and two creating the same experiment collide too. For a ``sqlite:///`` store both
    happen under an exclusive file lock (``<db>.lock``), so whoever comes second finds them done.
    """
    from mlflow.tracking import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)
        if experiment_name:
            _ensure_experiment(client, experiment_name, artifact_location)
        return client
    from filelock import FileLock, Timeout

    db = Path(tracking_uri[len("sqlite:///"):])
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(db) + ".lock")
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            client = MlflowClient(tracking_uri)
            client.search_experiments(max_results=1)  # creates and migrates the schema
            if experiment_name:
                _ensure_experiment(client, experiment_name, artifact_location)
    except Timeout:
        raise ConfigError("logger.mlflow.tracking_uri", tracking_uri,
                          hint=f"another process held {db}.lock for {LOCK_TIMEOUT_S:.0f} s; if none is running, "
                          "delete the lock file") from None
    return client


def _ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> None:
    from mlflow.exceptions import MlflowException

    if client.get_experiment_by_name(name) is None:
        try:
            client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:
            if client.get_experiment_by_name(name) is None:  # a store without the lock (a server): only re-raise
                raise                                         # when it really is missing


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the working folder (the CLIs' default store)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{os.path.abspath('mlflow.db')}"


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(root_dir: str | Path | None = None) -> dict[str, str]:
    import lightning
    import mlflow
    import torch

    commit = git_commit(root_dir)
    return {
        "twinode.git_commit": commit,
        **({"mlflow.source.git.commit": commit} if commit != "unknown" else {}),  # the UI's Version column
        "twinode.torch_version": torch.__version__,
        "twinode.lightning_version": lightning.__version__,
        "twinode.mlflow_version": mlflow.__version__,
        "twinode.python_version": platform.python_version(),
    }


def ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"

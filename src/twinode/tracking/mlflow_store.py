"""MLflow store set-up and run bookkeeping (config, versions, fingerprint, artifacts)."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient


def ensure_store(tracking_uri: str) -> MlflowClient:
    """Create the backing store now (a fresh SQLite DB is not safe to create from several
    processes at once, e.g. in a multirun), and return a client for it."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri)
    client.search_experiments(max_results=1)
    return client


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags(root_dir: str | Path | None = None) -> dict[str, str]:
    import lightning
    import torch

    return {
        "twinode.git_commit": git_commit(root_dir),
        "twinode.torch_version": torch.__version__,
        "twinode.lightning_version": lightning.__version__,
        "twinode.mlflow_version": mlflow.__version__,
        "twinode.python_version": platform.python_version(),
    }


def ui_command(tracking_uri: str) -> str:
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"

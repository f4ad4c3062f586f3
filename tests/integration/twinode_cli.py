"""Run twinode-train as users do (a fresh process, Hydra command line) with tiny configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.source.n_patients=40",
    "data.batch_size=8",
    "data.eval_batch_size=64",
    "model.twin.latent_dim=8",
    "model.twin.hidden=16",
    "model.twin.encoder_hidden=16",
    "solver.step=2.0",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
]


def env_for(root: Path, **extra: str) -> dict[str, str]:
    # only what the test asks for; the configs come from the package (pkg://twinode.configs)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "TWINODE_CONFIG_DIR")}
    env.update({"TWINODE_ROOT": str(root),
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "twinode.cli.train", *overrides]


def run_train(root: Path, overrides: list[str], timeout: float = 600, **env) -> subprocess.CompletedProcess:
    out = subprocess.run(train_cmd(*overrides), cwd=root, env=env_for(root, **env), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def runs_of(tracking_uri: str, experiment: str = "twinode"):
    client = mlflow.tracking.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment} in {tracking_uri}"
    return client, client.search_runs([exp.experiment_id])

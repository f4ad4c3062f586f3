"""Two twinode-train processes started together on a fresh SQLite store both finish (the store's
schema and the experiment are created under a file lock), each in its own MLflow run."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.twinode_cli import TINY, env_for, runs_of, train_cmd


@pytest.mark.slow
def test_two_trainings_on_a_fresh_store(tmp_path):
    assert not (tmp_path / "mlflow.db").exists()
    overrides = TINY + ["trainer.max_epochs=1", "export=false"]
    procs = [subprocess.Popen(train_cmd(*overrides, f"hydra.run.dir={tmp_path}/run{i}"), cwd=tmp_path,
                              env=env_for(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    for p, err in zip(procs, errors):
        assert p.returncode == 0, err[-3000:]
    _, runs = runs_of(f"sqlite:///{tmp_path}/mlflow.db")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}

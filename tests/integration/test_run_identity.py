"""Runs a user can tell apart: distinct names, the git commit where MLflow's UI shows it, and
debug runs that never become the registered candidate."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from tests.conftest import COARSE, FAST, compose_train
from twinode.training.pipeline import train


def test_runs_get_distinct_names_and_the_git_commit_tag(tmp_path):
    names = []
    for i in range(2):
        cfg = compose_train(tmp_path, FAST + COARSE + ["trainer.max_epochs=1", "registry.enabled=false",
                                                       f"paths.output_dir={tmp_path}/out{i}"])
        result = train(cfg)
        run = MlflowClient(result.tracking_uri).get_run(result.run_id)
        names.append(run.info.run_name)
        commit = run.data.tags["twinode.git_commit"]
        if commit != "unknown":
            assert run.data.tags["mlflow.source.git.commit"] == commit
    assert names[0] != names[1] and all(n.startswith("train-") for n in names)


def test_fast_dev_run_registers_no_candidate(tmp_path):
    cfg = compose_train(tmp_path, FAST + COARSE + ["+trainer.fast_dev_run=true", "registry.enabled=true"])
    result = train(cfg)
    client = MlflowClient(result.tracking_uri)
    assert client.search_registered_models() == []

"""@candidate moves only for a completed, non-debug, non-sweep run."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient

from tests.conftest import COARSE, CONFIGS, FAST, compose_train
from twinode.training.pipeline import REGISTRY_TAG, registry_skip_reason, train

NAME = "twinode-policy"
ONE_EPOCH = FAST + COARSE + ["trainer.max_epochs=1", "callbacks.progress_bar=null", f"registry.model_name={NAME}"]


class _Multirun:
    """Hydra's runtime state as a multirun trial sees it."""

    def __init__(self, tmp_path):
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            self.cfg = compose("train", overrides=[f"hydra.sweep.dir={tmp_path}/multirun"], return_hydra_config=True)
        self.cfg.hydra.mode = RunMode.MULTIRUN

    def __enter__(self):
        HydraConfig.instance().set_config(self.cfg)
        return self

    def __exit__(self, *exc):
        HydraConfig.instance().cfg = None


def _candidate(client: MlflowClient) -> str:
    return client.get_model_version_by_alias(NAME, "candidate").run_id


def test_skip_reasons(tmp_path):
    cfg = compose_train(tmp_path)
    assert registry_skip_reason(cfg) is None
    assert "did not complete" in registry_skip_reason(cfg, fit_completed=False)
    assert "enabled" in registry_skip_reason(compose_train(tmp_path, ["registry.enabled=false"]))
    assert "fast_dev_run" in registry_skip_reason(compose_train(tmp_path, ["+trainer.fast_dev_run=true"]))
    assert "overfit_batches" in registry_skip_reason(compose_train(tmp_path, ["+trainer.overfit_batches=2"]))
    with _Multirun(tmp_path):
        assert "sweep trial" in registry_skip_reason(cfg)
        assert registry_skip_reason(compose_train(tmp_path, ["registry.register_sweep_trials=true"])) is None


def test_debug_runs_and_sweep_trials_leave_candidate_where_it_is(tmp_path):
    first = train(compose_train(tmp_path, ONE_EPOCH + [f"paths.output_dir={tmp_path}/first"]))
    client = MlflowClient(first.tracking_uri)
    assert _candidate(client) == first.run_id

    debug = train(compose_train(tmp_path, FAST + COARSE + ["+trainer.fast_dev_run=true", "callbacks.progress_bar=null",
                                                           f"registry.model_name={NAME}",
                                                           f"paths.output_dir={tmp_path}/debug"]))
    with _Multirun(tmp_path):
        trial = train(compose_train(tmp_path, ONE_EPOCH + [f"paths.output_dir={tmp_path}/trial"]))

    assert _candidate(client) == first.run_id
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert client.get_run(debug.run_id).data.tags[REGISTRY_TAG] == "not registered: debug run (trainer.fast_dev_run)"
    assert client.get_run(trial.run_id).data.tags[REGISTRY_TAG].startswith("not registered: sweep trial")
    assert REGISTRY_TAG not in client.get_run(first.run_id).data.tags


@pytest.mark.slow
def test_sweep_trials_register_when_configured(tmp_path):
    with _Multirun(tmp_path):
        trial = train(compose_train(tmp_path, ONE_EPOCH + ["registry.register_sweep_trials=true"]))
    assert _candidate(MlflowClient(trial.tracking_uri)) == trial.run_id

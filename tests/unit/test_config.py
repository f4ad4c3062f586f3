from pathlib import Path

import pytest
from hydra.errors import MissingConfigException
from hydra.utils import instantiate

from tests.conftest import CONFIGS, FAST, compose_train
from twinode.errors import ConfigError
from twinode.training.pipeline import build_twin

GROUPS = ["data", "model", "solver", "trainer", "logger", "callbacks", "paths", "hydra", "experiment"]


def test_every_group_exists():
    for g in GROUPS:
        assert (CONFIGS / g).is_dir(), g
    assert (CONFIGS / "train.yaml").is_file()


@pytest.mark.parametrize("solver", sorted(p.stem for p in (CONFIGS / "solver").glob("*.yaml")))
def test_solver_options_compose_and_instantiate(tmp_path, solver):
    cfg = compose_train(tmp_path, FAST + [f"solver={solver}"])
    dm = instantiate(cfg.data)
    dm.setup()
    twin = build_twin(cfg, dm.dims, dm.spec)
    assert twin.n_measurements == len(dm.spec.measurements)


def test_default_config_builds_every_part(tmp_path):
    cfg = compose_train(tmp_path, FAST)
    dm = instantiate(cfg.data)
    dm.setup()
    twin = build_twin(cfg, dm.dims, dm.spec)
    lit = instantiate(cfg.model.lit)(twin=twin)
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(c) for c in cfg.callbacks.values()])
    assert lit.twin is twin
    assert trainer.max_epochs == cfg.trainer.max_epochs
    assert cfg.logger.mlflow.tracking_uri.startswith("sqlite:///")
    assert cfg.logger.mlflow.tracking_uri.endswith("mlflow.db")


def test_tracking_uri_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    cfg = compose_train(tmp_path, FAST)
    assert cfg.logger.mlflow.tracking_uri == "http://127.0.0.1:5999"


def test_logger_pair_composes(tmp_path):
    cfg = compose_train(tmp_path, FAST + ["logger=[mlflow,wandb]"])
    assert set(cfg.logger) == {"mlflow", "wandb"}


def test_unknown_group_option_names_allowed_values(tmp_path):
    with pytest.raises(MissingConfigException) as err:
        compose_train(tmp_path, ["solver=nonexistent"])
    assert "rk4" in str(err.value)


def test_bad_solver_method_names_key_and_allowed(tmp_path):
    cfg = compose_train(tmp_path, FAST + ["solver.method=rk9"])
    with pytest.raises(ConfigError) as err:
        instantiate(cfg.solver)(field=None)
    msg = str(err.value)
    assert "solver.method" in msg and "rk4" in msg and "rk9" in msg

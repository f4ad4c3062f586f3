"""Lightning conventions in the shipped configs: EarlyStopping and LearningRateMonitor in the
default callbacks, the optimiser and LR schedule as config nodes, and the debug config group."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from mlflow.tracking import MlflowClient

from tests.conftest import COARSE, FAST, compose_train
from twinode.training.pipeline import _callbacks, build_twin, train

QUIET = FAST + COARSE + ["callbacks.progress_bar=null"]


def _lit(cfg, tmp_path, **factories):
    dm = instantiate(cfg.data)
    dm.setup("fit")
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec, trust=True), metadata={})
    for name, value in factories.items():
        setattr(lit, name, value)
    return lit


def _last_epoch(out) -> int:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"]


def _global_step(out) -> int:
    return torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]


def test_default_callbacks_hold_early_stopping_and_lr_monitor(tmp_path):
    cfg = compose_train(tmp_path)
    made = _callbacks(cfg, has_logger=True)
    stop = next(c for c in made if isinstance(c, EarlyStopping))
    assert stop.monitor == cfg.callbacks.model_checkpoint.monitor == "val/forecast_mae" and stop.patience >= 5
    assert any(isinstance(c, LearningRateMonitor) for c in made)
    assert not any(isinstance(c, LearningRateMonitor) for c in _callbacks(cfg, has_logger=False))


def test_config_optimiser_matches_the_built_in_default(tmp_path):
    cfg = compose_train(tmp_path, FAST + ["model.lit.lr=0.004", "model.lit.lr_min_factor=0.25"])
    assert cfg.model.optimizer._partial_ and cfg.model.scheduler._partial_
    built_in = _lit(cfg, tmp_path)  # no factories: the module's own AdamW + cosine
    configured = _lit(cfg, tmp_path, optimizer_factory=instantiate(cfg.model.optimizer),
                      scheduler_factory=instantiate(cfg.model.scheduler))
    for lit in (built_in, configured):
        out = lit.configure_optimizers()
        opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
        assert isinstance(opt, torch.optim.AdamW) and out["lr_scheduler"]["interval"] == "epoch"
        assert opt.defaults["lr"] == 0.004 and opt.defaults["weight_decay"] == cfg.model.lit.weight_decay
        assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
        assert sched.eta_min == pytest.approx(0.004 * 0.25)
    assert configured.configure_optimizers()["lr_scheduler"]["scheduler"].T_max == cfg.trainer.max_epochs


def test_other_optimisers_and_schedules_from_config(tmp_path):
    cfg = compose_train(tmp_path, FAST + ["model/optimizer=adam", "model/scheduler=plateau"])
    lit = _lit(cfg, tmp_path, optimizer_factory=instantiate(cfg.model.optimizer),
               scheduler_factory=instantiate(cfg.model.scheduler))
    out = lit.configure_optimizers()
    assert type(out["optimizer"]) is torch.optim.Adam
    assert isinstance(out["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert out["lr_scheduler"]["monitor"] == "val/forecast_mae"
    constant = compose_train(tmp_path, FAST + ["model.scheduler=null"])
    assert isinstance(_lit(constant, tmp_path, scheduler_factory=None).configure_optimizers(), torch.optim.AdamW)


def test_lr_monitor_logs_to_mlflow_and_early_stopping_stops(tmp_path):
    # min_delta larger than any change: the second validation is no improvement, patience 1 stops there.
    result = train(compose_train(tmp_path, QUIET + ["trainer.max_epochs=5", "registry.enabled=false",
                                                    "callbacks.early_stopping.patience=1",
                                                    "callbacks.early_stopping.min_delta=1e9"]))
    assert _last_epoch(result.output_dir) == 2  # stopped after 2 of 5 epochs
    lrs = [m.value for m in MlflowClient(result.tracking_uri).get_metric_history(result.run_id, "lr-AdamW")]
    assert len(lrs) == 2 and lrs[1] < lrs[0]  # the cosine schedule, one value per epoch


def test_training_without_a_logger_keeps_the_default_callbacks(tmp_path):
    result = train(compose_train(tmp_path, QUIET + ["trainer.max_epochs=1", "logger=none"]))
    assert result.run_id is None and result.twin_path.is_file() and "val/forecast_mae" in result.metrics


@pytest.mark.parametrize("name, check", [
    ("fast_dev_run", lambda cfg, out: cfg.trainer.fast_dev_run is True and _global_step(out) == 1),
    ("limit", lambda cfg, out: cfg.trainer.limit_train_batches == 3 and _last_epoch(out) == 2),
    ("profiler", lambda cfg, out: "SimpleProfiler" in cfg.trainer.profiler._target_
     and "run_training_epoch" in (out / "fit-profile.txt").read_text()),
    ("overfit", lambda cfg, out: cfg.trainer.overfit_batches == 2 and _last_epoch(out) == 2),
])
def test_debug_group(name, check, tmp_path):
    extra = ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1"] if name == "overfit" else []
    cfg = compose_train(tmp_path, QUIET + [f"debug={name}", *extra])
    assert cfg.registry.enabled is False
    result = train(cfg)
    assert check(cfg, result.output_dir)
    assert result.twin_path.is_file()
    assert MlflowClient(result.tracking_uri).search_registered_models() == []

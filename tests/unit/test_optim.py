"""The LR schedule's config: ReduceLROnPlateau steps on the metric ``model.scheduler.monitor`` names."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import FAST, compose_train
from twinode.training.optim import MONITOR, MonitoredPlateau
from twinode.training.pipeline import build_twin


def _configured(tmp_path, overrides: list[str]) -> dict:
    cfg = compose_train(tmp_path, FAST + ["model/scheduler=plateau"] + overrides)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec, trust=True), metadata={})
    lit.optimizer_factory = instantiate(cfg.model.optimizer)
    lit.scheduler_factory = instantiate(cfg.model.scheduler)
    return lit.configure_optimizers()["lr_scheduler"]


@pytest.mark.parametrize("monitor", [None, "val/forecast_mse"])
def test_plateau_steps_on_the_configured_metric(tmp_path, monitor):
    sched = _configured(tmp_path, [] if monitor is None else [f"model.scheduler.monitor={monitor}"])
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert sched["monitor"] == (monitor or MONITOR) == sched["scheduler"].monitor


def test_monitored_plateau_is_reduce_lr_on_plateau():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = MonitoredPlateau(opt, monitor="val/x", factor=0.5, patience=0)
    sched.step(1.0)
    sched.step(2.0)
    assert sched.monitor == "val/x" and opt.param_groups[0]["lr"] == 0.5

"""Numerical guards: each failure (non-finite loss, non-finite gradients, solver failure) is
provoked in a real Lightning fit, under both policies (raise naming subjects, skip and count)."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Trainer

from tests.conftest import COARSE, FAST, compose_train
from twinode.errors import ConfigError, SolverError
from twinode.training.callbacks import NumericalGuard
from twinode.training.pipeline import build_twin


def _setup(tmp_path, overrides=()):
    cfg = compose_train(tmp_path, FAST + (list(overrides) or COARSE))
    dm = instantiate(cfg.data)
    dm.setup("fit")
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    return dm, lit


def _fit(dm, lit, guard, steps=3):
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, limit_val_batches=0, callbacks=[guard], gradient_clip_val=1.0)
    trainer.fit(lit, datamodule=dm)
    return trainer


def _nan_on_calls(module, calls):
    """Make ``module`` output NaN on the given (0-based) forward calls only."""
    seen = {"n": 0}

    def hook(_m, _inp, out):
        i, seen["n"] = seen["n"], seen["n"] + 1
        if i in calls:
            return tuple(o * float("nan") for o in out) if isinstance(out, tuple) else out * float("nan")
        return out
    return module.register_forward_hook(hook)


def _inf_grad_on_calls(param, calls):
    seen = {"n": 0}

    def hook(g):
        i, seen["n"] = seen["n"], seen["n"] + 1
        return g * float("inf") if i in calls else g
    return param.register_hook(hook)


def _subject_ids(message: str) -> list[int]:
    m = re.search(r"[Ss]ubjects:? \[([0-9, ]+)", message)
    assert m, message
    return [int(x) for x in m.group(1).split(",")]


def test_nonfinite_loss_raises_naming_the_batch_subjects(tmp_path):
    dm, lit = _setup(tmp_path)
    _nan_on_calls(lit.twin.decoder, {0})
    with pytest.raises(SolverError, match="non-finite training loss") as info:
        _fit(dm, lit, NumericalGuard("raise"))
    train_ids = {r.subject_id for r in dm.splits["train"]}
    ids = _subject_ids(str(info.value))
    assert ids and set(ids) <= train_ids


def test_nonfinite_loss_skip_drops_that_update_only(tmp_path):
    dm, lit = _setup(tmp_path)
    _nan_on_calls(lit.twin.decoder, {1})  # the second training batch
    guard = NumericalGuard("skip")
    trainer = _fit(dm, lit, guard, steps=4)
    assert guard.skipped == 1
    assert trainer.global_step == 4  # training went on
    assert trainer.callback_metrics["train/skipped_batches"] == 1
    assert all(torch.isfinite(p).all() for p in lit.parameters())


def test_skipped_batch_leaves_weights_and_optimiser_untouched(tmp_path):
    # The fitted channel prior sets the decoder before the first step by design; with one rate
    # for every channel, the weights at the start are the ones built here.
    dm, lit = _setup(tmp_path, ["model.lit.channel_prior=fixed"] + COARSE)
    _nan_on_calls(lit.twin.decoder, {0, 1, 2})  # every batch bad: nothing may change
    before = {k: v.clone() for k, v in lit.state_dict().items()}
    guard = NumericalGuard("skip")
    _fit(dm, lit, guard, steps=3)
    assert guard.skipped == 3
    assert all(torch.equal(before[k], v) for k, v in lit.state_dict().items())


def test_nonfinite_gradients_raise_naming_parameter_and_subjects(tmp_path):
    dm, lit = _setup(tmp_path)
    _inf_grad_on_calls(next(lit.twin.decoder.parameters()), {0})
    with pytest.raises(SolverError, match="non-finite gradients") as info:
        _fit(dm, lit, NumericalGuard("raise"))
    assert "decoder" in str(info.value)
    assert _subject_ids(str(info.value))


def test_nonfinite_gradients_skip_counts(tmp_path):
    dm, lit = _setup(tmp_path)
    _inf_grad_on_calls(next(lit.twin.decoder.parameters()), {0})
    guard = NumericalGuard("skip")
    _fit(dm, lit, guard, steps=3)
    assert guard.skipped == 1
    assert all(torch.isfinite(p).all() for p in lit.parameters())


def test_solver_failure_raises_naming_subjects(tmp_path):
    dm, lit = _setup(tmp_path, ["solver=dopri5", "solver.max_steps=2"])
    with pytest.raises(SolverError) as info:
        _fit(dm, lit, NumericalGuard("raise"))
    assert "Subjects:" in str(info.value)
    assert set(_subject_ids(str(info.value))) <= {r.subject_id for r in dm.splits["train"]}


def test_solver_failure_skip_counts_every_failed_batch(tmp_path):
    dm, lit = _setup(tmp_path, ["solver=dopri5", "solver.max_steps=2"])
    guard = NumericalGuard("skip")
    _fit(dm, lit, guard, steps=2)
    assert guard.skipped == 2


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="guards.on_nonfinite"):
        NumericalGuard("ignore")


def test_defaults_clip_gradients_and_raise(tmp_path):
    cfg = compose_train(tmp_path)
    assert cfg.trainer.gradient_clip_val == 1.0
    assert cfg.callbacks.numerical_guard.on_nonfinite == "raise"
    cfg = compose_train(tmp_path, ["guards.on_nonfinite=skip"])
    assert instantiate(cfg.callbacks.numerical_guard).on_nonfinite == "skip"

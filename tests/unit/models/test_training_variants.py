"""Short real Lightning runs per model variant, and solver failures named by subject."""

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from tests.conftest import COARSE, FAST, compose_train
from twinode.data.collate import Batch
from twinode.errors import SolverError
from twinode.training.pipeline import build_twin

TINY = FAST + COARSE + ["data.source.n_patients=40", "data.eval_batch_size=64"]
VARIANTS = {
    "gru_delta_variational": ["model.twin.variational=true"],
    "ode_rnn_deterministic": ["model.twin.encoder=ode_rnn", "model.twin.variational=false"],
    "hybrid_ode_rnn_interpolation": ["model=latent_ode_hybrid", "model.twin.encoder=ode_rnn", "model.twin.encoder_method=euler",
                                     "data.task=interpolation"],
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains_a_few_steps(tmp_path, name):
    cfg = compose_train(tmp_path, TINY + VARIANTS[name])
    dm = instantiate(cfg.data)
    dm.setup()
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    before = {k: v.clone() for k, v in lit.twin.state_dict().items()}
    trainer = Trainer(max_steps=3, limit_val_batches=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lit, datamodule=dm)
    m = trainer.callback_metrics
    for key in ("train/loss", "val/forecast_mae", "val/forecast_mse", "val/forecast_nll", "val/risk_auroc"):
        assert key in m and torch.isfinite(m[key]), key
    assert any(not torch.equal(before[k], v) for k, v in lit.twin.state_dict().items())
    if "variational" in name:
        assert float(m["train/kl"]) > 0.0
    if "deterministic" in name:
        assert float(m["train/kl"]) == 0.0


def _batch_with_a_poisoned_subject(dm) -> Batch:
    from twinode.data.collate import collate_windows

    b = collate_windows([dm.val_windows[i] for i in range(4)])
    b.subject_id = torch.tensor([101, 202, 303, 404])
    b.hist_x[2, 0, :] = float("nan")  # a non-finite input the data layer would have refused
    b.hist_m[2, 0, :] = 1.0
    return b


@pytest.mark.parametrize("solver", ["rk4", pytest.param("dopri5", marks=pytest.mark.slow)])
def test_solver_failure_names_the_subject_through_the_lightning_module(tmp_path, solver):
    base = [o for o in TINY if o not in COARSE]
    overrides = base + (["solver=dopri5"] if solver == "dopri5" else COARSE)
    cfg = compose_train(tmp_path, overrides)
    dm = instantiate(cfg.data)
    dm.setup()
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    loader = DataLoader([_batch_with_a_poisoned_subject(dm)], batch_size=None)
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.raises(SolverError) as info:
        trainer.fit(lit, train_dataloaders=loader)
    msg = str(info.value)
    assert "303" in msg and "101" not in msg and "404" not in msg, msg
    assert "learning rate" in msg or "fixed-step" in msg or "clipping" in msg, msg

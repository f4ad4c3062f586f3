"""Shared test helpers: compose the real Hydra configs with small, fast overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

# The twin's small ops run fastest on one thread, and tests share two cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "src" / "twinode" / "configs"  # shipped in the package (pkg://twinode.configs)
SHARED_DATA = REPO.parent / "shared" / "data"

FAST = [
    "data.source.n_patients=60",
    "data.batch_size=16",
    "model.twin.latent_dim=8",
    "model.twin.hidden=16",
    "model.twin.encoder_hidden=16",
    "trainer.max_epochs=2",
]
# The default solver (rk4) on a coarse grid: fast enough for unit tests.
COARSE = ["solver.step=2.0"]


def compose_train(tmp_path: Path, overrides: list[str] = ()):
    """The train config as the CLI would build it, writing into ``tmp_path``."""
    base = [f"paths.output_dir={tmp_path / 'out'}", f"paths.root_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=base + list(overrides))


def set_up_lit(tmp_path: Path, overrides: list[str]):
    """``(lit, dm)``: the training module and data module of the composed config after a
    Lightning fit of zero steps, so ``setup`` has run as before the first step of a real one."""
    from hydra.utils import instantiate
    from lightning.pytorch import Trainer

    from twinode.training.pipeline import build_twin

    cfg = compose_train(tmp_path, overrides)
    dm = instantiate(cfg.data)
    dm.setup()
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    trainer = Trainer(max_steps=0, limit_val_batches=0, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lit, datamodule=dm)
    return lit, dm


@pytest.fixture
def small_cfg(tmp_path):
    return compose_train(tmp_path, FAST + COARSE)

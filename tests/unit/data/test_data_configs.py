"""The shipped data configs compose with train.yaml and build their source."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from twinode.data.sources import MedsSource

from tests.conftest import CONFIGS


@pytest.mark.skipif(not (CONFIGS / "train.yaml").exists(), reason="train.yaml not present")
@pytest.mark.parametrize("overrides, name, n_meas", [
    (["experiment=physionet2012"], "physionet2012", 37),
    (["data=mimic_iv_demo"], "mimic_iv_demo", 8),
])
def test_compose_and_build_source(overrides, name, n_meas, tmp_path, monkeypatch):
    monkeypatch.setenv("TWINODE_ROOT", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    source = instantiate(cfg.data.source)
    assert isinstance(source, MedsSource)
    assert source.spec.name == name and len(source.spec.measurements) == n_meas
    assert source.path.startswith(str(tmp_path))
    assert OmegaConf.select(cfg, "data.horizon_h") > 0

"""What an evaluation scores: a twin and the data module of its held-out split, from a
training checkpoint (read safely, the stored config rebuilt) or from an exported twin.pt
(checked, with the data described by train-config overrides and held to the twin's
normalisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twinode.errors import ConfigError, DataError


def from_checkpoint(path: Path, data_dir: str | None = None, trust: bool = False):
    """``(dm, twin, meta)`` from a ``.ckpt`` written by twinode-train."""
    from twinode.checkpoint import build_twin, instantiate_checked, load_checkpoint

    cfg, meta, state = load_checkpoint(path, trust=trust)
    if data_dir:
        if "path" not in cfg.data.source:
            raise ConfigError("--data-dir", data_dir, hint="this checkpoint's data source has no path")
        cfg.data.source.path = data_dir
    dm = instantiate_checked(cfg.data, "data", trust=trust, source=str(path))
    dm.setup("test")
    twin = build_twin(cfg, dm.dims, dm.spec, trust=trust, source=str(path))
    twin.load_state_dict(state)
    twin.eval()
    return dm, twin, {"source": str(path), "data_fingerprint": meta.get("data_fingerprint"),
                      "mlflow_run_id": meta.get("mlflow_run_id")}


def from_twin_file(path: Path, overrides: list[str], data_dir: str | None = None, sha256: str | None = None):
    """``(dm, twin, meta)`` from an exported ``twin.pt``; the data from the train config with
    ``overrides``, which must normalise exactly as the twin's metadata says."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from twinode.config_dir import config_dir
    from twinode.export.integrity import load_checked_twin

    module, meta, integrity = load_checked_twin(path, sha256)
    with initialize_config_dir(config_dir=str(Path(config_dir()).resolve()), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides) + ["paths.output_dir=."])
    if data_dir:
        cfg.data.source.path = data_dir
    dm = instantiate(cfg.data)
    dm.setup("test")
    mine, theirs = dm.normaliser.as_dict(), meta.get("normalisation", {})
    for key, value in mine.items():
        if key not in theirs or not np.allclose(value, theirs[key], rtol=1e-4, atol=1e-6):
            raise DataError(f"the data does not normalise as {path} was trained ({key} differs)",
                            file=str(path), hint="pass the --override settings of the training run (experiment, data)")
    return dm, module.twin, {"source": str(path), "data_fingerprint": meta.get("data_fingerprint"),
                             "mlflow_run_id": meta.get("training_run_id"), "sha256": integrity.sha256,
                             "integrity": integrity.checked_against}

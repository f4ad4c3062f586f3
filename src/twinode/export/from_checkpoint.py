"""Rebuild a twin from a Lightning checkpoint alone and export it (``twinode-export``).

A checkpoint written by TwinLitModule carries ``checkpoint["twinode"]`` = {config, dims,
spec, normaliser, data_fingerprint}: enough to rebuild the very same PatientTwin with
``training.pipeline.build_twin`` and load its weights, without the data.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from twinode.data.schema import FeatureSpec
from twinode.errors import ExportError
from twinode.export.torchscript import export_twin

REQUIRED_KEYS = ("config", "dims", "spec", "normaliser")


def read_checkpoint(path: str | Path, *, trust: bool = False) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors and plain containers only).

    ``trust=True`` allows full unpickling, for checkpoints from a source you trust that hold
    other objects; it is never the default.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): not a torch.save zip archive")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        if "Weights only load failed" in str(exc) and not trust:
            raise ExportError(f"{path}: the checkpoint holds objects beyond tensors and plain containers ({first}); "
                              "if you trust its source, pass trust_checkpoint=true") from exc
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): {first}") from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): {type(exc).__name__}: {first}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ExportError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    meta = ckpt.get("twinode")
    missing = [k for k in REQUIRED_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ExportError(f"{path} lacks twinode metadata {missing}; it was not written by twinode-train "
                          "(TwinLitModule stores checkpoint['twinode'])")
    return ckpt


def export_checkpoint(ckpt_path: str | Path, out: str | Path, *, run_id: str | None = None, trust: bool = False) -> Path:
    from twinode.training.pipeline import build_twin  # training stack only for this command

    ckpt = read_checkpoint(ckpt_path, trust=trust)
    meta = ckpt["twinode"]
    cfg = OmegaConf.create(meta["config"])
    spec = FeatureSpec.from_dict(meta["spec"])
    twin = build_twin(cfg, dict(meta["dims"]), spec)
    state = {k[len("twin."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("twin.")}
    try:
        twin.load_state_dict(state)
    except RuntimeError as exc:
        raise ExportError(f"{ckpt_path}: weights do not fit the twin its config describes: "
                          f"{str(exc).splitlines()[0][:300]}") from exc
    solver = {k: v for k, v in OmegaConf.to_container(cfg.solver, resolve=True).items() if not k.startswith("_")}
    return export_twin(twin, meta["normaliser"], spec, out, solver=solver, run_id=run_id,
                       data_fingerprint=meta.get("data_fingerprint"))

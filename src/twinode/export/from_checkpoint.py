"""Rebuild a twin from a Lightning checkpoint alone and export it (``twinode-export``).

A checkpoint written by TwinLitModule carries ``checkpoint["twinode"]`` = {config, dims,
spec, normaliser, data_fingerprint}: enough to rebuild the very same PatientTwin with
:func:`twinode.checkpoint.build_twin` and load its weights, without the data. The file is
read by :func:`twinode.checkpoint.load_checkpoint` (``weights_only=True``; only twinode's
own classes are built from its config unless ``trust``).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from twinode.checkpoint import build_twin, load_checkpoint, read_checkpoint  # noqa: F401 (read_checkpoint: API)
from twinode.data.schema import FeatureSpec
from twinode.errors import ExportError, TwinodeError
from twinode.export.torchscript import export_twin


def export_checkpoint(ckpt_path: str | Path, out: str | Path, *, run_id: str | None = None, trust: bool = False) -> Path:
    cfg, meta, state = load_checkpoint(ckpt_path, trust=trust)
    try:
        spec = FeatureSpec.from_dict(meta["spec"])
    except TwinodeError:
        raise
    except Exception as exc:  # a DataError names the field; anything else is a damaged record
        raise ExportError(f"{ckpt_path}: the stored FeatureSpec is not valid ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    twin = build_twin(cfg, dict(meta["dims"]), spec, trust=trust, source=str(ckpt_path))
    try:
        twin.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()] or [str(exc)]
        raise ExportError(f"{ckpt_path}: weights do not fit the twin its config describes: {lines[0][:300]}; "
                          "export the checkpoint with the twinode version that trained it") from None
    solver = {k: v for k, v in OmegaConf.to_container(cfg.solver, resolve=True).items() if not k.startswith("_")}
    return export_twin(twin, meta["normaliser"], spec, out, solver=solver, run_id=run_id,
                       data_fingerprint=meta.get("data_fingerprint"))

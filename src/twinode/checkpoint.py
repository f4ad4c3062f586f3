"""The one safe checkpoint reader, and :func:`build_twin` (config + dims + spec -> PatientTwin).

A checkpoint is data from outside: it is loaded with ``torch.load(..., weights_only=True)``
(tensors and plain containers; unpickling can build no other object and call no function),
and the training config stored in it is data too. Only twinode's own classes
(:func:`allowed_targets`) may be instantiated from a checkpoint's config, and the config may
hold no ``${...}`` interpolations (a stored config is resolved when saved). ``trust=True``
(``--trust-checkpoint`` for twinode-export and twinode-eval, ``trust_checkpoint=true`` for twinode-train) lifts
both limits for a checkpoint from a source you trust; it is never the default.

This module sits below ``training/`` and ``export/``: both, and the CLIs, import it.
"""

from __future__ import annotations

import functools
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from twinode.errors import ExportError

REQUIRED_KEYS = ("config", "dims", "spec", "normaliser")
TRUST_HINT = ("if you trust its source, pass --trust-checkpoint (twinode-export, twinode-eval) or trust_checkpoint=true "
              "(twinode-train resume)")

# The classes a checkpoint's config may name: these, and every ``twinode.*`` ``_target_`` in the
# configs shipped with this package (:func:`allowed_targets`). Anything else -- a user's own
# mechanistic prior, or builtins.open in a crafted file -- needs trust.
ALLOWED_TARGETS = frozenset({
    "twinode.data.datamodule.TwinDataModule",
    "twinode.data.sources.MedsSource",
    "twinode.data.sources.SyntheticICUSource",
    "twinode.data.simulators.glucose_source.GlucoseSimSource",
    "twinode.models.PatientTwin",
    "twinode.models.twin.PatientTwin",
    "twinode.models.mechanistic.VasopressorMAP",
    "twinode.solvers.FixedGridSolver",
    "twinode.solvers.Dopri5Solver",
    "twinode.solvers.TorchdiffeqSolver",
    "twinode.training.lit_module.TwinLitModule",
})


@functools.lru_cache(maxsize=1)
def allowed_targets() -> frozenset[str]:
    """:data:`ALLOWED_TARGETS` plus the ``twinode.*`` targets that the package's own configs name
    (a config group added to configs/ is re-resolved from there; nothing outside twinode is)."""
    from twinode.config_dir import shipped_dir

    found = set()
    shipped = shipped_dir()
    for path in shipped.rglob("*.yaml") if shipped.is_dir() else []:
        try:
            found |= set(re.findall(r"^\s*_target_:\s*(twinode\.[\w.]+)\s*$", path.read_text(), flags=re.M))
        except (OSError, UnicodeDecodeError):
            continue
    return ALLOWED_TARGETS | frozenset(found)


def read_checkpoint(path: str | Path, *, trust: bool = False) -> dict:
    """The whole Lightning checkpoint dict, loaded with ``weights_only=True`` unless ``trust``.

    Raises :class:`ExportError` naming the file for a missing, truncated or foreign file, and
    for one that holds objects beyond tensors and plain containers (with the trust hint).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged or foreign
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): not a torch.save zip archive; "
                          "pick another checkpoint (e.g. an earlier epoch's) or train again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if "Weights only load failed" in str(exc) and not trust:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            detail = f"it names {found.group(1)}" if found else first
            raise ExportError(f"{path}: the checkpoint holds objects beyond tensors and plain containers, which could "
                              f"run code when loaded ({detail[:200]}); {TRUST_HINT}") from None
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): {first}") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"{path} is not a readable checkpoint (corrupted or truncated?): {type(exc).__name__}: {first}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ExportError(f"{path} is not a Lightning checkpoint (no 'state_dict'); pass the .ckpt written by twinode-train")
    return ckpt


def load_checkpoint(path: str | Path, trust: bool = False) -> tuple[DictConfig, dict, dict]:
    """Read a twinode training checkpoint safely: ``(cfg, meta, state_dict)``.

    - ``cfg``: the resolved training config stored in the checkpoint, as a DictConfig. It is
      data: build objects from it only with :func:`instantiate_checked` or :func:`build_twin`
      (both refuse ``_target_``s outside :func:`allowed_targets` unless ``trust``).
    - ``meta``: ``checkpoint["twinode"]`` (config, dims, spec, normaliser, data_fingerprint,
      mlflow_run_id when tracked).
    - ``state_dict``: the twin's weights, keys as in ``PatientTwin.state_dict()`` (the
      Lightning ``"twin."`` prefix removed): ``twin.load_state_dict(state_dict)``.

    ``trust=False`` (the default) loads with ``weights_only=True`` and refuses interpolations
    in the stored config; ``trust=True`` allows full unpickling, for a source you trust.
    Every failure is an :class:`ExportError` whose message names the file and the fix.
    """
    ckpt = read_checkpoint(path, trust=trust)
    meta = ckpt.get("twinode")
    missing = [k for k in REQUIRED_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise ExportError(f"{path} lacks twinode metadata {missing}; it was not written by twinode-train "
                          "(TwinLitModule stores checkpoint['twinode'])")
    if not isinstance(meta["config"], dict):
        raise ExportError(f"{path}: checkpoint['twinode']['config'] is a {type(meta['config']).__name__}, "
                          "expected the resolved training config (a mapping)")
    if not trust:
        try:
            _refuse_interpolations(meta["config"], str(path), "config")
        except RecursionError:
            raise ExportError(f"{path}: the stored config is nested too deeply to be a twinode config") from None
    try:
        cfg = OmegaConf.create(meta["config"])
    except Exception as exc:  # an OmegaConf error on a crafted or damaged config
        raise ExportError(f"{path}: the stored training config is not a valid config ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    state = {k[len("twin."):]: v for k, v in ckpt["state_dict"].items()
             if isinstance(k, str) and k.startswith("twin.")}
    return cfg, meta, state


def _refuse_interpolations(node: Any, source: str, where: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _refuse_interpolations(v, source, f"{where}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _refuse_interpolations(v, source, f"{where}[{i}]")
    elif isinstance(node, str) and "${" in node:
        raise ExportError(f"{source}: the stored config has an interpolation at {where} ({node[:80]!r}); twinode stores "
                          f"resolved configs, so this checkpoint was edited; {TRUST_HINT}")


def check_targets(node: Any, where: str, *, trust: bool = False, source: str = "the checkpoint") -> None:
    """Refuse any ``_target_`` under ``node`` (a config subtree) that is not in :func:`allowed_targets`."""
    if trust:
        return
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and (not isinstance(target, str) or target not in allowed_targets()):
            raise ExportError(f"{source}: config key '{where}._target_' names {str(target)[:120]!r}, which is not one "
                              f"of twinode's own classes and is not instantiated from a checkpoint; {TRUST_HINT}")
        for k, v in node.items():
            check_targets(v, f"{where}.{k}", trust=False, source=source)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_targets(v, f"{where}[{i}]", trust=False, source=source)


def instantiate_checked(node: DictConfig, where: str, *, trust: bool = False, source: str = "the checkpoint", **kwargs):
    """``hydra.utils.instantiate(node, **kwargs)`` after :func:`check_targets` (e.g. ``cfg.data`` for evaluation)."""
    from hydra.utils import instantiate

    check_targets(node, where, trust=trust, source=source)
    return instantiate(node, **kwargs)


def build_twin(cfg: DictConfig, dims: dict, spec, *, trust: bool = False, source: str = "the config") -> torch.nn.Module:
    """The PatientTwin a config describes (``cfg.solver``, ``cfg.model.twin``) for data of
    ``dims`` and FeatureSpec ``spec``. Only :func:`allowed_targets` are built unless ``trust``
    (training passes ``trust=True``: its config is the user's own)."""
    half_lives = [f.effect_half_life_h for f in spec.interventions]
    solver = instantiate_checked(cfg.solver, "solver", trust=trust, source=source)
    make = instantiate_checked(cfg.model.twin, "model.twin", trust=trust, source=source)
    extra = {}
    if cfg.model.twin.get("risk_head") and not spec.outcomes:
        extra["risk_head"] = False  # nothing to learn it from
    twin = make(**dims, solver=solver, half_life_h=half_lives or None, **extra)
    # Each dose channel's absorption starts from the FeatureSpec's peak time (effect_peak_h).
    from twinode.models.dynamics import set_dose_peaks

    set_dose_peaks(twin, [f.effect_peak_h for f in spec.interventions])
    return twin

"""Where an interrupted run continues from: its last checkpoint and its MLflow run id.

The run id is persisted twice, in ``<output_dir>/run.json`` (written as soon as the run
exists) and in every checkpoint (``checkpoint["twinode"]["mlflow_run_id"]``), so a resumed
training logs into the same MLflow run even when only the checkpoint survived.

The checkpoint is read here, before any MLflow run is touched, with the safe reader
(:func:`twinode.checkpoint.read_checkpoint`, ``weights_only=True``): a truncated or foreign
file is one clear error and the tracked run stays as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from twinode.checkpoint import read_checkpoint
from twinode.errors import ConfigError, ExportError

RUN_STATE = "run.json"


@dataclass
class ResumePoint:
    ckpt_path: str | None = None
    mlflow_run_id: str | None = None
    global_step: int | None = None  # of the checkpoint resumed from (None: not resuming, or not read yet)
    epoch: int | None = None

    @property
    def resuming(self) -> bool:
        return self.ckpt_path is not None


def write_run_state(output_dir: Path, mlflow_run_id: str, tracking_uri: str) -> None:
    (output_dir / RUN_STATE).write_text(json.dumps({"mlflow_run_id": mlflow_run_id, "tracking_uri": tracking_uri}))


def resume_point(resume, ckpt_path: str | None, output_dir: Path, *, trust: bool = False) -> ResumePoint:
    """``resume``: false, true (continue ``output_dir``) or a run folder; ``ckpt_path``: a
    checkpoint file or ``"last"`` (Lightning's name for ``checkpoints/last.ckpt``).
    ``trust``: read the checkpoint with full unpickling (``trust_checkpoint=true``)."""
    if resume in (None, False, "false") and not ckpt_path:
        return ResumePoint()
    if resume not in (None, False, "false"):
        run_dir = output_dir if resume in (True, "true") else Path(str(resume))
        ckpt = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise ConfigError("resume", resume, hint=f"no checkpoint at {ckpt}; pass hydra.run.dir=<folder of the "
                              "interrupted run> with resume=true, or resume=<that folder>")
    elif ckpt_path == "last":
        run_dir, ckpt = output_dir, output_dir / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            return ResumePoint(ckpt_path="last")  # Lightning warns and starts fresh, as documented
    else:
        ckpt = Path(str(ckpt_path))
        run_dir = ckpt.parent.parent
        if not ckpt.is_file():
            raise ConfigError("ckpt_path", ckpt_path, hint="no such checkpoint file")
    payload = _read(ckpt, "resume" if resume not in (None, False, "false") else "ckpt_path", trust)
    stored = payload.get("twinode")
    meta = stored if isinstance(stored, dict) else {}
    return ResumePoint(str(ckpt), _stored_run_id(run_dir) or meta.get("mlflow_run_id"),
                       _int(payload.get("global_step")), _int(payload.get("epoch")))


def _read(ckpt: Path, key: str, trust: bool) -> dict:
    try:
        return read_checkpoint(ckpt, trust=trust)
    except ExportError as exc:  # truncated, foreign or unsafe: say which file and what to do
        raise ConfigError(key, str(ckpt), hint=f"the checkpoint cannot be read: {exc}. Pick an older one with "
                          "ckpt_path=<file>, or start a new run without resume") from None


def _stored_run_id(run_dir: Path) -> str | None:
    state = run_dir / RUN_STATE
    if state.is_file():
        try:
            run_id = json.loads(state.read_text())["mlflow_run_id"]
            return run_id if isinstance(run_id, str) and run_id else None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            pass  # fall back to the checkpoint's own record
    return None


def _int(value) -> int | None:
    return int(value) if isinstance(value, int) else None

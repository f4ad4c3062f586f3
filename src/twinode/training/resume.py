"""Where an interrupted run continues from: its last checkpoint and its MLflow run id.

The run id is persisted twice, in ``<output_dir>/run.json`` (written as soon as the run
exists) and in every checkpoint (``checkpoint["twinode"]["mlflow_run_id"]``), so a resumed
training logs into the same MLflow run even when only the checkpoint survived.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from twinode.errors import ConfigError

RUN_STATE = "run.json"


@dataclass
class ResumePoint:
    ckpt_path: str | None = None
    mlflow_run_id: str | None = None

    @property
    def resuming(self) -> bool:
        return self.ckpt_path is not None


def write_run_state(output_dir: Path, mlflow_run_id: str, tracking_uri: str) -> None:
    (output_dir / RUN_STATE).write_text(json.dumps({"mlflow_run_id": mlflow_run_id, "tracking_uri": tracking_uri}))


def resume_point(resume, ckpt_path: str | None, output_dir: Path) -> ResumePoint:
    """``resume``: false, true (continue ``output_dir``) or a run folder; ``ckpt_path``: a
    checkpoint file or ``"last"`` (Lightning's name for ``checkpoints/last.ckpt``)."""
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
    return ResumePoint(str(ckpt), _stored_run_id(run_dir, ckpt))


def _stored_run_id(run_dir: Path, ckpt: Path) -> str | None:
    state = run_dir / RUN_STATE
    if state.is_file():
        try:
            return json.loads(state.read_text())["mlflow_run_id"]
        except (ValueError, KeyError):
            pass  # fall back to the checkpoint's own record
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # truncated or not a checkpoint: say which file
        raise ConfigError("resume", str(ckpt), hint=f"the checkpoint cannot be read ({type(exc).__name__}: {exc}); "
                          "pick an older one with ckpt_path=<file>") from exc
    return (payload.get("twinode") or {}).get("mlflow_run_id")

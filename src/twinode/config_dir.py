"""Locate the Hydra config folder: $TWINODE_CONFIG_DIR, ./configs, or the source checkout's."""

from __future__ import annotations

import os
from pathlib import Path


def candidate_dirs() -> list[Path]:
    """Every place configs may live, in the order they are searched."""
    dirs = [Path(os.environ["TWINODE_CONFIG_DIR"])] if os.environ.get("TWINODE_CONFIG_DIR") else []
    return dirs + [Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs"]  # src/twinode -> repo


def config_dir() -> str:
    candidates = candidate_dirs()
    for c in candidates:
        if (c / "train.yaml").is_file():
            return str(c.resolve())
    raise SystemExit(f"error: no twinode configs found (looked in {', '.join(map(str, candidates))}); "
                     "set TWINODE_CONFIG_DIR to the folder holding train.yaml")

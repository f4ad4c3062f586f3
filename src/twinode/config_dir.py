"""Locate the Hydra config folder.

The configs ship inside the package (``twinode/configs``, Hydra's ``pkg://twinode.configs``),
so an installed twinode needs no checkout. ``$TWINODE_CONFIG_DIR`` names a complete config
folder of your own (holding train.yaml) that replaces them; to add or override single groups
on top of the shipped ones, pass Hydra's ``--config-dir DIR`` to twinode-train instead.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE = "twinode.configs"
PKG_URI = f"pkg://{PACKAGE}"


def shipped_dir() -> Path:
    """The configs installed with twinode (a folder on disk for regular and editable installs)."""
    return Path(str(files(PACKAGE)))


def candidate_dirs() -> list[Path]:
    """Every place configs may live, in the order they are searched."""
    dirs = [Path(os.environ["TWINODE_CONFIG_DIR"])] if os.environ.get("TWINODE_CONFIG_DIR") else []
    return dirs + [shipped_dir()]


def config_dir() -> str:
    """The primary config folder (absolute): ``$TWINODE_CONFIG_DIR`` when set, else the package's."""
    candidates = candidate_dirs()
    for c in candidates:
        if (c / "train.yaml").is_file():
            return str(c.resolve())
    raise SystemExit(f"error: no twinode configs found (looked in {', '.join(map(str, candidates))}); "
                     "set TWINODE_CONFIG_DIR to a folder holding train.yaml, or reinstall twinode")

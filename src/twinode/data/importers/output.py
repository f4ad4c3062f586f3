"""Where an importer writes: a MEDS folder built aside and swapped in, never over the user's files.

- :func:`check_output` runs before any work: ``--out`` may not be (or hold) an input, may not
  name a file, and may only replace a folder that holds nothing but an earlier twinode import
  (its ``metadata/dataset.json`` says ``etl_name: twinode.*`` and every file is one an import
  writes); anything else needs ``overwrite=True``.
- :func:`staged_output` gives a fresh folder beside ``--out``; only when the importer returns
  does the new folder take ``--out``'s place (two renames; the previous import is removed
  after). An error, a full disk or a kill leaves ``--out`` exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from twinode.errors import DataError

DATASET_FILES = frozenset({"data/train/0.parquet", "data/tuning/0.parquet", "data/held_out/0.parquet",
                           "metadata/subject_splits.parquet", "metadata/codes.parquet", "metadata/dataset.json"})
FILE_SUFFIXES = (".parquet", ".csv", ".json", ".yaml", ".yml", ".gz", ".tar", ".txt")


def written_by_twinode(out: Path, files: frozenset[str] | None = DATASET_FILES) -> bool:
    """True when ``out``'s ``metadata/dataset.json`` names a twinode ETL and (unless ``files`` is
    None) every file in it is one of ``files``, relative to ``out``."""
    try:
        meta = json.loads((out / "metadata" / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or not str(meta.get("etl_name", "")).startswith("twinode."):
        return False
    if files is None:
        return True
    present = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
    return present <= files


def check_output(out: str | Path, inputs: list[str | Path], *, overwrite: bool = False,
                 files: frozenset[str] | None = DATASET_FILES) -> Path:
    """Refuse an ``--out`` that would lose the user's data; returns it as an absolute path.
    ``files``: what the writer puts in the folder (see :func:`written_by_twinode`)."""
    out = Path(out).absolute()
    for src in inputs:
        src = Path(src).absolute()
        if src == out or out in src.parents:
            raise DataError("--out would replace an input of this import", file=str(src),
                            hint="write the dataset to a new folder")
    if out.suffix.lower() in FILE_SUFFIXES:
        raise DataError(f"--out {out} looks like a file ({out.suffix}); a MEDS dataset is a folder",
                        hint="name a folder, e.g. --out data/physionet2012_meds")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; a MEDS dataset is a folder", hint="name a new folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not written_by_twinode(out, files):
        shown = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())[:3]
        raise DataError(f"--out {out} already holds files twinode did not write (e.g. {shown})",
                        hint="choose a new folder, or pass --overwrite to replace the whole folder")
    return out


@contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """A fresh folder beside ``out`` to write into; swapped in place of ``out`` on success."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.importing-{os.getpid()}"
    old = out.parent / f".{out.name}.previous-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)

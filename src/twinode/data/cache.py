"""Tensorized cohorts on disk, keyed by a fingerprint of the data files and the FeatureSpec.

A cohort is stored as one uncompressed ``.npz`` of packed arrays (all subjects' times,
values and masks concatenated, with offsets) plus a JSON sidecar (report, splits). Loading
is a few large reads and per-subject slicing, so later runs do no parsing. Writes go to a
temporary name and are renamed into place, so concurrent ranks never see half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from twinode.data.schema import FeatureSpec
from twinode.data.tensorize import SubjectRecord

# Bump when tensorize's outputs or this layout change: old entries then miss instead of lying.
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("TWINODE_CACHE_DIR", Path.home() / ".cache" / "twinode"))


def fingerprint(path: str | Path, spec: FeatureSpec) -> str:
    """sha256 over the bytes of every data/metadata file (with its relative name) and the spec."""
    path = Path(path)
    h = hashlib.sha256(f"twinode-cohort-v{CACHE_VERSION}".encode())
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and ".twinode_cache" not in p.parts)
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        with p.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def save(cache_dir: str | Path, key: str, records: list[SubjectRecord], splits: dict[int, str], report: dict) -> Path:
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    n = np.array([len(r.times) for r in records], np.int64)
    m = np.array([len(r.doses) for r in records], np.int64)
    D = records[0].values.shape[1] if records else 0
    arrays = {
        "subject_id": np.array([r.subject_id for r in records], np.int64),
        "outcome": np.array([r.outcome for r in records], np.float64),
        "static": np.stack([r.static for r in records]).astype(np.float32) if records else np.zeros((0, 0), np.float32),
        "t_off": np.concatenate([[0], np.cumsum(n)]),
        "d_off": np.concatenate([[0], np.cumsum(m)]),
        "times": np.concatenate([r.times for r in records]) if records else np.zeros(0, np.float32),
        "values": np.concatenate([r.values for r in records]) if records else np.zeros((0, D), np.float32),
        "mask": np.concatenate([r.mask for r in records]) if records else np.zeros((0, D), np.float32),
        "doses": np.concatenate([r.doses for r in records]) if records else np.zeros((0, 4), np.float32),
    }
    target = cache_dir / f"{key}.npz"
    tmp = cache_dir / f".{key}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **arrays)
    side = cache_dir / f".{key}.{os.getpid()}.tmp.json"
    side.write_text(json.dumps({"report": report, "splits": {str(k): v for k, v in splits.items()}}))
    os.replace(side, cache_dir / f"{key}.json")  # sidecar first: an .npz is only visible with its JSON
    os.replace(tmp, target)
    return target


def load(cache_dir: str | Path, key: str) -> tuple[list[SubjectRecord], dict[int, str], dict] | None:
    """The cached cohort, or None on a miss (or an unreadable entry, which is then rebuilt)."""
    cache_dir = Path(cache_dir)
    npz, side = cache_dir / f"{key}.npz", cache_dir / f"{key}.json"
    if not (npz.exists() and side.exists()):
        return None
    try:
        meta = json.loads(side.read_text())
        with np.load(npz) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    t_off, d_off = a["t_off"], a["d_off"]
    records = [
        SubjectRecord(int(sid), a["times"][t_off[i]:t_off[i + 1]], a["values"][t_off[i]:t_off[i + 1]],
                      a["mask"][t_off[i]:t_off[i + 1]], a["doses"][d_off[i]:d_off[i + 1]], a["static"][i], float(a["outcome"][i]))
        for i, sid in enumerate(a["subject_id"].tolist())
    ]
    return records, {int(k): v for k, v in meta["splits"].items()}, meta["report"]

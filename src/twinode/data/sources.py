"""Where a cohort's events come from. Each source returns events, a FeatureSpec and splits.

A source is a small picklable object built from config (``_target_``); the datamodule
calls ``load()`` once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from twinode.data.schema import FeatureSpec
from twinode.data.simulators import synthetic_icu


@dataclass
class LoadedEvents:
    events: pl.DataFrame  # subject_id, time (float hours from window start), code, numeric_value
    spec: FeatureSpec
    splits: dict[int, str]  # subject_id -> train | tuning | held_out
    name: str
    # Set by sources that tensorize (and cache) themselves; the datamodule then skips tensorize.
    records: list | None = None
    report: object | None = None  # TensorizeReport, with validation drops merged in
    fingerprint: str | None = None


class SyntheticICUSource:
    """The embedded default cohort, generated in code with a fixed seed (no downloads)."""

    def __init__(self, n_patients: int = 400, seed: int = 0):
        self.n_patients, self.seed = n_patients, seed

    def load(self) -> LoadedEvents:
        events = synthetic_icu.generate_cohort(self.n_patients, seed=self.seed)
        splits = synthetic_icu.default_splits(events["subject_id"].to_numpy(), seed=self.seed)
        return LoadedEvents(events, synthetic_icu.feature_spec(), splits, f"synthetic_icu(n={self.n_patients},seed={self.seed})")


class MedsSource:
    """A MEDS dataset folder, or one long CSV/parquet file, read through a FeatureSpec.

    ``spec`` is a FeatureSpec or its mapping (as written inline in ``configs/data/*.yaml``).
    Events are checked, aligned to each subject's window and tensorized; the result is
    cached under ``cache_dir`` (default ``$TWINODE_CACHE_DIR`` or ``~/.cache/twinode``)
    keyed by a fingerprint of the files and the spec, so later loads do no parsing.
    Subjects missing from ``metadata/subject_splits.parquet`` get a fixed hash split.
    """

    def __init__(self, path: str, spec, cache_dir: str | None = None, use_cache: bool = True):
        self.path, self.use_cache = str(path), use_cache
        self.spec = spec if isinstance(spec, FeatureSpec) else FeatureSpec.from_dict(_plain(spec))
        self.cache_dir = cache_dir

    def load(self) -> LoadedEvents:
        from twinode.data import cache
        from twinode.data.readers import hash_split
        from twinode.data.tensorize import TensorizeReport, tensorize
        from twinode.data.validate import load_checked

        name = f"meds({Path(self.path).name},spec={self.spec.name})"
        cache_dir = Path(self.cache_dir) if self.cache_dir else cache.default_cache_dir()
        key = cache.fingerprint(self.path, self.spec)
        hit = cache.load(cache_dir, key) if self.use_cache else None
        if hit is not None:
            records, splits, rep = hit
            report = TensorizeReport(rep["subjects"], rep["events"])
            report.dropped.update(rep["dropped"])
        else:
            checked = load_checked(self.path, self.spec)
            records, report = tensorize(checked.events, self.spec, source=self.path)
            report.events = checked.report.events
            report.dropped.update(checked.report.dropped)
            splits = {r.subject_id: checked.splits.get(r.subject_id) or hash_split(r.subject_id) for r in records}
            if self.use_cache:
                cache.save(cache_dir, key, records, splits, report.as_dict())
        return LoadedEvents(None, self.spec, splits, name, records=records, report=report, fingerprint=key)


def _plain(spec) -> dict:
    """OmegaConf containers (from Hydra) -> plain dicts and lists."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(spec, DictConfig):
            return OmegaConf.to_container(spec, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a dependency
        pass
    return dict(spec)

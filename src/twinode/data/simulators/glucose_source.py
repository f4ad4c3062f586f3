"""``GlucoseSimSource``: a simulated T1D cohort generated on first use, then read as MEDS.

The cohort (see :mod:`glucose_cohort`) is written once under
``<cache_dir>/glucose_sim/n<N>_d<D>_s<S>_v<V>`` and then loaded through :class:`MedsSource`,
so training sees exactly what ``twinode-data simulate glucose`` writes and the tensorized
cohort is cached the same way as any MEDS dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twinode.data.sources import LoadedEvents, MedsSource

# Bump when the simulator or the behaviour model changes what a seed produces.
COHORT_VERSION = 2  # 2: doubled boluses and temporary basal rates


class GlucoseSimSource:
    def __init__(self, spec, n_patients: int = 200, days: int = 1, seed: int = 0, cache_dir: str | None = None,
                 device: str = "cpu", use_cache: bool = True):
        self.spec, self.n_patients, self.days, self.seed = spec, int(n_patients), int(days), int(seed)
        self.cache_dir, self.device, self.use_cache = cache_dir, device, use_cache

    def cohort_dir(self) -> Path:
        from twinode.data import cache

        root = Path(self.cache_dir) if self.cache_dir else cache.default_cache_dir()
        return root / "glucose_sim" / f"n{self.n_patients}_d{self.days}_s{self.seed}_v{COHORT_VERSION}"

    def ensure_cohort(self) -> Path:
        """The cohort folder, simulated now if absent (written to a temporary folder, then renamed)."""
        from twinode.data.simulators.glucose_cohort import generate_glucose_cohort

        path = self.cohort_dir()
        if (path / "metadata" / "dataset.json").exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=path.name + ".", dir=path.parent))
        try:
            generate_glucose_cohort(tmp, self.n_patients, self.days, self.seed, device=self.device)
            try:
                os.replace(tmp, path)
            except OSError:  # another process finished first: keep its copy
                if not (path / "metadata" / "dataset.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def load(self) -> LoadedEvents:
        path = self.ensure_cohort()
        loaded = MedsSource(str(path), self.spec, cache_dir=self.cache_dir, use_cache=self.use_cache).load()
        loaded.name = f"glucose_sim(n={self.n_patients},days={self.days},seed={self.seed})"
        return loaded

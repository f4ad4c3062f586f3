"""The readers on the real data in ../shared/data, when it is present."""

from __future__ import annotations

import time

import numpy as np
import pytest

from twinode.data.spec_files import load_spec
from twinode.data.importers.physionet2012 import import_physionet2012
from twinode.data.sources import MedsSource

from conftest import SHARED_DATA

MIMIC = SHARED_DATA / "mimic-iv-demo-meds"
PN = SHARED_DATA / "physionet2012"


@pytest.mark.skipif(not MIMIC.exists(), reason="shared MIMIC-IV demo not present")
def test_mimic_demo_icu_windows(tmp_path):
    spec = load_spec("mimic_iv_demo")
    loaded = MedsSource(str(MIMIC), spec, cache_dir=str(tmp_path)).load()
    rep = loaded.report.dropped
    assert 90 <= len(loaded.records) <= 100  # subjects with an ICU stay
    assert rep["after_window"] > 0 and rep["duplicate_row"] > 0 and rep["unmapped_code"] > 0
    times = np.concatenate([r.times for r in loaded.records])
    assert times.min() >= 0 and times.max() <= 48
    doses = np.concatenate([r.doses for r in loaded.records])
    assert len(doses) > 0 and np.isfinite(doses).all() and (doses[:, 3] > 0).mean() > 0.9  # infusions paired with their end
    hr = np.concatenate([r.values[r.mask[:, 0] > 0, 0] for r in loaded.records])
    assert 60 < np.median(hr) < 110


@pytest.mark.slow
@pytest.mark.skipif(not (PN / "set-a.tar.gz").exists(), reason="shared PhysioNet 2012 data not present")
def test_set_a_cached_load_is_fast(tmp_path):
    import_physionet2012(PN / "set-a.tar.gz", PN / "Outcomes-a.txt", tmp_path / "pn")
    spec = load_spec("physionet2012")
    first = MedsSource(str(tmp_path / "pn"), spec, cache_dir=str(tmp_path / "c")).load()
    t0 = time.perf_counter()
    second = MedsSource(str(tmp_path / "pn"), spec, cache_dir=str(tmp_path / "c")).load()
    assert time.perf_counter() - t0 < 2.0
    assert len(second.records) == len(first.records) == 4000
    assert sum(1 for r in second.records if r.outcome == 1.0) == 554

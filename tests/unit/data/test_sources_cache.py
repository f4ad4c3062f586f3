"""MedsSource, the on-disk cohort cache, the datamodule on MEDS data, and the window tasks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from twinode.data import cache, validate as validate_mod
from twinode.data.datamodule import TwinDataModule
from twinode.data.schema import FeatureSpec
from twinode.data.sources import MedsSource
from twinode.data.tensorize import SubjectRecord
from twinode.data.windows import ForecastWindows
from twinode.errors import ConfigError

from conftest import TINY_SPEC


def test_second_load_comes_from_cache_without_parsing(tiny_meds, tmp_path, monkeypatch):
    first = MedsSource(str(tiny_meds), TINY_SPEC, cache_dir=str(tmp_path / "c")).load()
    assert len(list((tmp_path / "c").glob("*.npz"))) == 1

    def no_parsing(*a, **k):
        raise AssertionError("a cache hit must not read the events again")

    monkeypatch.setattr(validate_mod, "load_checked", no_parsing)
    second = MedsSource(str(tiny_meds), TINY_SPEC, cache_dir=str(tmp_path / "c")).load()
    assert second.fingerprint == first.fingerprint and second.splits == first.splits
    assert second.report.as_dict() == first.report.as_dict()
    for a, b in zip(first.records, second.records):
        assert a.subject_id == b.subject_id and a.outcome == b.outcome
        for k in ("times", "values", "mask", "doses", "static"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_fingerprint_changes_with_data_and_spec(tiny_meds):
    spec = FeatureSpec.from_dict(TINY_SPEC)
    key = cache.fingerprint(tiny_meds, spec)
    assert cache.fingerprint(tiny_meds, spec) == key
    other = FeatureSpec.from_dict({**TINY_SPEC, "window_hours": 12})
    assert cache.fingerprint(tiny_meds, other) != key
    shard = tiny_meds / "data" / "train" / "0.parquet"
    shard.write_bytes(shard.read_bytes() + b"\0")
    assert cache.fingerprint(tiny_meds, spec) != key


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    rec = SubjectRecord(1, np.zeros(1, np.float32), np.zeros((1, 2), np.float32), np.ones((1, 2), np.float32),
                        np.zeros((0, 4), np.float32), np.zeros(1, np.float32))
    cache.save(tmp_path, "k", [rec], {1: "train"}, {"subjects": 1, "events": 1, "dropped": {}})
    assert cache.load(tmp_path, "k")[1] == {1: "train"}
    (tmp_path / "k.npz").write_bytes(b"garbage")
    assert cache.load(tmp_path, "k") is None


def test_datamodule_on_meds_source(tiny_meds, tmp_path):
    dm = TwinDataModule(MedsSource(str(tiny_meds), TINY_SPEC, cache_dir=str(tmp_path / "c")), horizon_h=6, batch_size=4)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 8, "tuning": 2, "held_out": 2}
    assert dm.dims == {"n_measurements": 2, "n_static": 1, "n_interventions": 1}
    batch = next(iter(dm.train_dataloader()))
    assert batch.hist_x.shape[0] == 4 and batch.hist_x.shape[2] == 2
    assert torch.isfinite(batch.doses).all() and batch.doses[:, 0, 3].eq(2.5).all()  # infusion durations
    assert len(dm.fingerprint) == 64
    pickle.dumps(dm.train_windows)  # DataLoader workers and DDP need picklable datasets


def test_datamodule_rejects_unknown_task(tiny_meds):
    with pytest.raises(ConfigError, match="data.task"):
        TwinDataModule(MedsSource(str(tiny_meds), TINY_SPEC), task="nowcast")


def _record(times):
    t = np.asarray(times, np.float32)
    v = np.arange(len(t), dtype=np.float32)[:, None]
    return SubjectRecord(1, t, v, np.ones_like(v), np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


def test_interpolation_task_reconstructs_the_whole_window():
    w = ForecastWindows([_record([1, 10, 30, 47])], horizon_h=12, window_h=48, mode="interpolation")[0]
    assert w.hist_t.tolist() == [1, 10, 30, 47] and w.tgt_t.tolist() == [1, 10, 30, 47]


def test_extrapolation_task_is_first_half_to_second_half():
    w = ForecastWindows([_record([1, 10, 24, 30, 47])], horizon_h=6, window_h=48, mode="extrapolation")[0]
    assert w.hist_t.tolist() == [1, 10, 24] and w.tgt_t.tolist() == [30, 47]
    assert w.anchor == 24


def test_forecast_modes_unchanged():
    ds = ForecastWindows([_record([1, 10, 30, 40, 47])], horizon_h=12, window_h=48, mode="fixed")
    w = ds[0]
    assert w.hist_t.tolist() == [1, 10, 30] and w.tgt_t.tolist() == [40, 47]

import numpy as np
import torch

from twinode.data.collate import collate_windows
from twinode.data.tensorize import SubjectRecord
from twinode.data.windows import ForecastWindows
from twinode.models.baselines import locf_forecast


def _record(sid, times, d=2):
    n = len(times)
    values = np.arange(n * d, dtype=np.float32).reshape(n, d)
    mask = np.ones((n, d), np.float32)
    mask[::2, 1] = 0
    values *= mask
    doses = np.array([[1.0, 0, 5.0, 0.0]] * (sid + 1), np.float32)
    return SubjectRecord(sid, np.asarray(times, np.float32), values, mask, doses, np.array([1.0, np.nan], np.float32), 0.0)


def test_collate_pads_each_subject_without_union_of_times():
    recs = [_record(0, [0.5, 1.0, 3.0, 7.0]), _record(1, [0.2, 2.5, 4.0, 5.5, 6.0, 9.0, 11.0])]
    ds = ForecastWindows(recs, horizon_h=4.0, window_h=12.0, mode="fixed")
    b = collate_windows([ds[0], ds[1]])
    # history is t <= 8 for both; each keeps its own times
    assert b.hist_len.tolist() == [4, 5]
    assert b.hist_t.shape == (2, 5)
    assert torch.equal(b.hist_t[0, :4], torch.tensor([0.5, 1.0, 3.0, 7.0]))
    assert b.hist_t[0, 4] == 7.0  # padding repeats the last time
    assert b.hist_m[0, 4].sum() == 0  # ... and is masked out
    assert b.tgt_t.shape == (2, 2) and b.tgt_m[0].sum() == 0  # subject 0 has no target in (8, 12]
    assert torch.equal(b.tgt_t[1], torch.tensor([9.0, 11.0]))
    assert b.doses.shape == (2, 2, 4) and b.doses[0, 1, 2] == 0  # padded dose row has no amount
    assert b.static_m.tolist() == [[1.0, 0.0], [1.0, 0.0]] and b.static[0, 1] == 0
    assert b.anchor.tolist() == [7.0, 6.0]


def test_random_windows_differ_by_epoch_and_repeat_within():
    recs = [_record(0, np.linspace(0, 47, 60))]
    ds = ForecastWindows(recs, horizon_h=6.0, window_h=48.0, mode="random", min_history_h=6.0, seed=1)
    first = ds.cut_time(0)
    assert first == ds.cut_time(0)
    ds.set_epoch(1)
    assert ds.cut_time(0) != first
    assert 6.0 <= ds.cut_time(0) <= 42.0


def test_locf_takes_last_observed_value_per_channel():
    x = torch.tensor([[[1.0, 5.0], [2.0, 0.0], [0.0, 0.0]]])
    m = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    value, seen = locf_forecast(x, m, 3)
    assert value.shape == (1, 3, 2)
    assert value[0, 0].tolist() == [2.0, 5.0]
    m2 = m.clone()
    m2[..., 1] = 0
    _, seen2 = locf_forecast(x, m2, 1)
    assert seen2[0, 0].tolist() == [1.0, 0.0]

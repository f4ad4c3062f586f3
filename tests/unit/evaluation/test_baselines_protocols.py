"""Evaluation baselines and windows: exact on the cases they are built for, fitted on the
train split only, and held-out targets that never leak into the history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinode.data.collate import collate_windows
from twinode.data.tensorize import SubjectRecord
from twinode.data.windows import ForecastWindows
from twinode.evaluation.baselines import Anchors, DecayToMean, linear_interpolation, locf
from twinode.evaluation.scoring import ForecastScore, risk_scores


def _record(sid: int, times, values, mask=None) -> SubjectRecord:
    v = np.asarray(values, np.float32).reshape(len(times), -1)
    m = np.ones_like(v) if mask is None else np.asarray(mask, np.float32).reshape(v.shape)
    return SubjectRecord(sid, np.asarray(times, np.float32), v * m, m, np.zeros((0, 4), np.float32),
                         np.zeros(0, np.float32))


def test_linear_interpolation_is_exact_on_a_line_and_locf_carries_forward():
    times = np.arange(0.0, 48.0, 2.0)
    rec = _record(1, times, 0.5 * times - 3.0)
    w = ForecastWindows([rec], 24.0, 48.0, "imputation")[0]
    b = collate_windows([w])
    a = Anchors(b.hist_t, b.hist_x, b.hist_m, b.hist_len, b.tgt_t)
    inside = (b.tgt_t > b.hist_t[0, 0]) & (b.tgt_t < b.anchor.unsqueeze(1))
    err = (linear_interpolation(a) - b.tgt_x)[inside]
    assert inside.any() and float(err.abs().max()) < 1e-4
    late = b.tgt_t > b.anchor.unsqueeze(1)
    if late.any():
        assert torch.allclose(locf(a)[late], b.hist_x[0, -1].expand_as(locf(a)[late]))


def test_imputation_windows_hold_out_half_and_never_leak_targets():
    rng = np.random.default_rng(0)
    recs = [_record(i, np.sort(rng.uniform(0, 48, 40)), rng.normal(size=40)) for i in range(20)]
    ds = ForecastWindows(recs, 24.0, 48.0, "imputation")
    shares = []
    for i in range(len(ds)):
        w = ds[i]
        assert not set(w.hist_t.tolist()) & set(w.tgt_t.tolist())
        assert len(w.hist_t) + len(w.tgt_t) == 40
        shares.append(len(w.tgt_t) / 40)
        again = ds[i]  # seeded by subject: the same split every time
        assert np.array_equal(again.tgt_t, w.tgt_t)
    assert 0.35 < float(np.mean(shares)) < 0.65


def test_mixed_windows_forecast_and_impute_and_change_with_the_epoch():
    rng = np.random.default_rng(1)
    recs = [_record(i, np.sort(rng.uniform(0, 48, 60)), rng.normal(size=60)) for i in range(10)]
    ds = ForecastWindows(recs, 24.0, 48.0, "mixed", min_history_h=6.0, max_holdout=0.5)
    held_inside = 0
    for i in range(len(ds)):
        w = ds[i]
        assert not set(w.hist_t.tolist()) & set(w.tgt_t.tolist())
        assert w.tgt_t.max() <= w.anchor + 24.0 + 1e-4 or (w.tgt_t < w.anchor).any()
        held_inside += int((w.tgt_t < w.anchor).sum())
    assert held_inside > 0
    first = [ds[i].tgt_t.copy() for i in range(len(ds))]
    ds.set_epoch(1)
    assert any(not np.array_equal(a, ds[i].tgt_t) for i, a in enumerate(first))


def test_decay_to_mean_fit_recovers_the_generating_half_life_and_weight():
    # Each subject: a level, the last value far from it, relaxing with a 6 h half-life.
    rng = np.random.default_rng(2)
    recs = []
    k = np.log(2) / 6.0
    for i in range(200):
        level = rng.normal()
        t = np.arange(0.0, 48.0, 1.0)
        x = np.where(t <= 24.0, level + rng.normal(scale=0.05, size=t.size), 0.0)
        x[24] = level + 3.0  # a jump at the cut
        after = t > 24.0
        x[after] = level + 3.0 * np.exp(-k * (t[after] - 24.0))
        recs.append(_record(i, t, x))
    batches = [collate_windows([w for w in ForecastWindows(recs, 24.0, 48.0, "fixed")])]
    fit = DecayToMean.fit(batches, 1)
    assert abs(float(np.log(2) / fit.k[0]) - 6.0) < 1e-3
    assert float(fit.w[0]) >= 0.8  # the history mean (about the level) is the target


def test_forecast_score_per_variable_versus_pooled_and_coverage():
    class Identity:
        def __call__(self, x, clip=False):
            return x

    s = ForecastScore(2)
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    mask = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    s.update(pred, target, mask, Identity(), torch.zeros(1, 4, 2), torch.tensor([[1.0, 7.0, 13.0, 1.0]]))
    r = s.result(["a", "b"])
    assert abs(r["mse_minmax_per_variable"] - (1.0 + 4.0) / 2) < 1e-9
    assert abs(r["mse_minmax_pooled"] - (3.0 + 4.0) / 4) < 1e-9
    assert abs(r["coverage90"] - 3 / 4) < 1e-9  # |1| <= 1.645 three times, |2| > 1.645 once
    assert set(r["coverage90_by_bucket"]) == {"0-6 h", "6-12 h", "12-18 h"}
    # The last bucket takes every target past its start, and says so.
    far = ForecastScore(1, bucket_h=6.0, n_buckets=2)
    far.update(torch.zeros(1, 2, 1), torch.zeros(1, 2, 1), torch.ones(1, 2, 1), Identity(), torch.zeros(1, 2, 1),
               torch.tensor([[1.0, 30.0]]))
    assert far.result(["a"])["coverage90_by_bucket"] == {"0-6 h": {"coverage": 1.0, "n": 1.0},
                                                         ">= 6 h": {"coverage": 1.0, "n": 1.0}}


def test_forecast_score_counts_stays_and_the_share_the_worst_one_carries():
    class Identity:
        def __call__(self, x, clip=False):
            return x

    s = ForecastScore(3)
    # Two batches of stays; channel a: errors 1, 1 and 2 (squared 1, 1, 4) in three stays;
    # channel b: one stay; channel c: exact everywhere.
    target = torch.tensor([[[1.0, 3.0, 5.0]], [[1.0, 0.0, 5.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.0, 1.0]]])
    pred = torch.tensor([[[0.0, 0.0, 5.0]], [[0.0, 0.0, 5.0]]])
    s.update(pred, target, mask, Identity())
    s.update(torch.zeros(1, 1, 3), torch.tensor([[[2.0, 0.0, 0.0]]]), torch.tensor([[[1.0, 0.0, 1.0]]]), Identity())
    per = s.result(["a", "b", "c"])["per_variable"]
    assert [per[k]["stays"] for k in "abc"] == [3, 1, 3]
    assert abs(per["a"]["top_stay_share"] - 4.0 / 6.0) < 1e-9
    assert per["b"]["top_stay_share"] == 1.0 and per["c"]["top_stay_share"] == 0.0
    assert ForecastScore(2).result(["a", "b"])["per_variable"]["a"] == {"mse_minmax": 0.0, "n": 0.0, "stays": 0,
                                                                       "top_stay_share": 0.0}


def test_risk_scores_count_positives_and_give_an_interval():
    y = torch.tensor([0, 0, 1, 1, 0, 1, 0, 0, 1, 0] * 5)
    p = y.float() * 0.6 + torch.linspace(0, 0.3, 50)
    r = risk_scores(y, p, n_boot=200)
    assert r["positives"] == 20 and r["n"] == 50 and r["auroc"] == 1.0
    assert r["auroc_ci95"][0] <= r["auroc"] <= r["auroc_ci95"][1] + 1e-9
    assert "auroc" not in risk_scores(torch.zeros(5), torch.rand(5))


def test_mixed_windows_draw_some_late_cuts_with_whole_stay_histories():
    rng = np.random.default_rng(3)
    recs = [_record(i, np.sort(rng.uniform(0, 48, 60)), rng.normal(size=60)) for i in range(200)]
    ds = ForecastWindows(recs, 24.0, 48.0, "mixed", max_holdout=0.0, late_cut_share=0.25)
    late = np.mean([ds.cut_time(i) > 24.0 for i in range(len(ds))])
    assert 0.15 < late < 0.35
    never = ForecastWindows(recs, 24.0, 48.0, "mixed", late_cut_share=0.0)
    assert max(never.cut_time(i) for i in range(len(never))) <= 24.0


def test_ratio_intervals_resample_subjects_and_bracket_the_ratio():
    from twinode.evaluation.scoring import ratio_intervals

    class Identity:
        def __call__(self, x, clip=False):
            return x

    gen = torch.Generator().manual_seed(0)
    target = torch.randn(60, 5, 2, generator=gen)
    mask = torch.ones(60, 5, 2)
    good, bad = ForecastScore(2), ForecastScore(2)
    good.update(target + 0.5 * torch.randn(60, 5, 2, generator=gen), target, mask, Identity())
    bad.update(target + torch.randn(60, 5, 2, generator=gen), target, mask, Identity())
    ci = ratio_intervals(good, bad, n_boot=300)
    ratio = good.result(["a", "b"])["mse_minmax_pooled"] / bad.result(["a", "b"])["mse_minmax_pooled"]
    lo, hi = ci["pooled_ci95"]
    assert lo < ratio < hi and 0.1 < lo and hi < 0.5  # about 0.25, never near 1
    assert ci["per_variable_ci95"][0] < ci["per_variable_ci95"][1] and ci["resamples"] == 300
    same = ratio_intervals(good, good, n_boot=50)
    assert same["pooled_ci95"] == [1.0, 1.0]
    # A reference exact up to rounding (decay-to-mean at the history's own points) gives no
    # interval: dividing by its rounding error printed ratios of 1e15 in eval.md.
    exact = ForecastScore(2)
    exact.update(target + 1e-8 * torch.randn(60, 5, 2, generator=gen), target, mask, Identity())
    assert ratio_intervals(good, exact, n_boot=50) == {}
    from twinode.evaluation.report import _ratio
    assert _ratio(0.5, 1e-16) == "-" and _ratio(0.5, 1.0) == "0.500"


def test_holdout_prob_leaves_that_share_of_mixed_windows_whole_and_keeps_the_rest():
    rng = np.random.default_rng(4)
    recs = [_record(i, np.sort(rng.uniform(0, 48, 60)), rng.normal(size=60)) for i in range(200)]
    every = ForecastWindows(recs, 24.0, 48.0, "mixed", late_cut_share=0.0)
    half = ForecastWindows(recs, 24.0, 48.0, "mixed", late_cut_share=0.0, holdout_prob=0.5)
    holds = [bool((half[i].tgt_t < half[i].anchor).any()) for i in range(len(half))]
    assert 0.35 < float(np.mean(holds)) < 0.65
    for i, held in enumerate(holds):  # the windows that hold out, hold out what holdout_prob = 1 does
        if held:
            np.testing.assert_array_equal(half[i].tgt_t, every[i].tgt_t)
    with pytest.raises(ValueError, match="holdout_prob"):
        ForecastWindows(recs, 24.0, 48.0, "mixed", holdout_prob=1.5)

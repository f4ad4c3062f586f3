"""Baselines and evaluation metrics on hand-built batches with known answers."""

import math

import torch

from twinode.evaluation.baselines import Anchors, history_mean, locf, population_mean
from twinode.models.baselines import LogisticRisk, summary_features
from twinode.training.metrics import MinMaxScale, interval_hits, masked_sq_error


def _history():
    # Subject 0: channel 0 seen at steps 0 and 2 (values 1, 3); channel 1 never seen.
    # Subject 1: channel 0 seen once (value -2); channel 1 seen at step 1 (value 4).
    x = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [3.0, 0.0]], [[-2.0, 0.0], [0.0, 4.0], [0.0, 0.0]]])
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    return x, m


def test_forecast_baselines_by_hand():
    x, m = _history()
    t, length = torch.tensor([[0.0, 1.0, 2.0]] * 2), torch.tensor([3, 3])
    a = Anchors(t, x, m, length, torch.tensor([[3.0, 4.0]] * 2))  # two queries after the history
    f = {"locf": locf(a), "history_mean": history_mean(a), "population_mean": population_mean(a)}
    assert f["locf"].shape == (2, 2, 2)
    torch.testing.assert_close(f["locf"][:, 0], torch.tensor([[3.0, 0.0], [-2.0, 4.0]]))
    torch.testing.assert_close(f["history_mean"][:, 1], torch.tensor([[2.0, 0.0], [-2.0, 4.0]]))
    assert float(f["population_mean"].abs().sum()) == 0.0


def test_summary_features_by_hand():
    x, m = _history()
    static, static_m = torch.tensor([[0.5], [0.0]]), torch.tensor([[1.0], [0.0]])
    f = summary_features(x, m, static, static_m)
    assert f.shape == (2, 5 * 2 + 2)
    # last, mean, min, max, log1p(count) for channel 0 of subject 0; statics and their mask.
    torch.testing.assert_close(f[0, [0, 2, 4, 6, 8]], torch.tensor([3.0, 2.0, 1.0, 3.0, math.log(3.0)]))
    torch.testing.assert_close(f[0, [1, 3, 5, 7, 9]], torch.zeros(5))  # never seen: zeros, count 0
    torch.testing.assert_close(f[:, 10:], torch.tensor([[0.5, 1.0], [0.0, 0.0]]))


def test_logistic_risk_separates_a_linear_outcome():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g) * torch.tensor([1.0, 10.0, 0.1])
    y = (x[:, 0] - 0.2 * x[:, 1] > 0).float()
    p = LogisticRisk(l2=1e-4).fit(x[:300], y[:300]).predict_proba(x[300:])
    acc = ((p > 0.5).float() == y[300:]).float().mean()
    assert acc > 0.93, float(acc)


def test_minmax_scale_uses_the_train_range_in_original_units():
    # Channel 0 plain (mean 10, std 2); channel 1 log1p (stored as log1p(v), mean 1, std 0.5).
    mean, std, log1p = torch.tensor([10.0, 1.0]), torch.tensor([2.0, 0.5]), torch.tensor([False, True])
    raw = torch.tensor([[8.0, 1.0], [12.0, 3.0], [14.0, 100.0]])
    norm = torch.stack([(raw[:, 0] - 10) / 2, (torch.log1p(raw[:, 1]) - 1) / 0.5], 1)
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])  # the 100 is not observed
    scale = MinMaxScale.fit(norm, mask, mean, std, log1p)
    torch.testing.assert_close(scale(norm[:2]), torch.tensor([[0.0, 0.0], [4 / 6, 1.0]]))
    # Predictions outside the range are clipped only when asked.
    assert float(scale(norm[2:], clip=True)[0, 1]) == 1.0
    assert float(scale(norm[2:])[0, 1]) > 10


def test_interval_hits_and_squared_error():
    mean, log_std = torch.zeros(1, 4, 1), torch.zeros(1, 4, 1)
    target = torch.tensor([0.5, 1.6, 1.7, -3.0]).view(1, 4, 1)
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0]).view(1, 4, 1)
    assert float(interval_hits(mean, log_std, target, mask)) == 2.0  # |1.7| > 1.645
    sq, cnt = masked_sq_error(mean, target, mask)
    assert math.isclose(float(sq), 0.25 + 2.56 + 2.89, rel_tol=1e-6) and float(cnt) == 3.0


def test_a_channel_with_one_training_value_scores_a_clipped_prediction_as_exact():
    # MechVent-like: every training value is 1. A prediction a hair above it is clipped to it,
    # not scored as most of a (clamped) unit range away.
    mean, std, log1p = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([False, False])
    norm = torch.tensor([[0.0, -1.0], [0.0, 1.0]])
    scale = MinMaxScale.fit(norm, torch.ones(2, 2), mean, std, log1p)
    pred = torch.tensor([[1e-4, 0.0], [-1e-4, 0.5]])
    scaled = scale(pred, clip=True)
    torch.testing.assert_close(scaled[:, 0], scale(norm)[:, 0])  # both 0: the one value
    torch.testing.assert_close(scaled[:, 1], torch.tensor([0.5, 0.75]))  # a ranged channel as before

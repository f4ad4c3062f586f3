"""LogisticRisk and the early-warning calibration on scikit-learn: the same objective as
documented, the degenerate one-class cases, and reliability bins that add up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinode.apps.early_warning import apply_logistic, brier, fit_logistic, reliability
from twinode.models.baselines import LogisticRisk


def test_logistic_risk_minimises_the_mean_loss_plus_l2():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 4, generator=g) * torch.tensor([1.0, 5.0, 0.2, 2.0]) + 3.0
    y = (x[:, 0] + 0.3 * x[:, 1] + torch.randn(300, generator=g) > 4.0).float()
    l2 = 1e-2
    model = LogisticRisk(l2=l2, max_iter=1000).fit(x, y)
    scaler, lr = model.model[0], model.model[1]
    z = torch.tensor(scaler.transform(x.double().numpy()))
    w = torch.tensor(lr.coef_[0], requires_grad=True)
    b = torch.tensor(float(lr.intercept_[0]), dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y.double()) + l2 * w.pow(2).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    assert float(gw.abs().max()) < 1e-4 and abs(float(gb)) < 1e-4  # a stationary point of the stated objective
    p = model.predict_proba(x)
    assert p.dtype == torch.float32 and p.shape == (300,)
    torch.testing.assert_close(p, torch.sigmoid(z @ w.detach() + b.detach()).float())


def test_logistic_risk_with_one_class_predicts_its_rate():
    x = torch.randn(20, 3)
    p = LogisticRisk().fit(x, torch.zeros(20)).predict_proba(torch.randn(5, 3))
    assert torch.equal(p, torch.zeros(5))


def test_platt_scaling_with_one_class_is_its_clipped_log_odds():
    a, b = fit_logistic(np.arange(10.0), np.ones(10))
    assert a == 0.0 and apply_logistic(np.array([0.0]), (a, b))[0] == pytest.approx(1 - 1e-6)


def test_reliability_bins_add_up_and_match_the_brier_score():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(float)
    rel = reliability(p, y, bins=5)
    assert sum(r["n"] for r in rel) == 500 and [r["bin"] for r in rel] == ["0.0-0.2", "0.2-0.4", "0.4-0.6", "0.6-0.8", "0.8-1.0"]
    for r, lo in zip(rel, (0.0, 0.2, 0.4, 0.6, 0.8)):
        assert lo <= r["predicted"] <= lo + 0.2 and abs(r["observed"] - r["predicted"]) < 0.15
    assert brier(p, y) == pytest.approx(float(np.mean((p - y) ** 2)))
    assert brier(np.zeros(3), np.zeros(3)) == 0.0  # one class is fine

import numpy as np
import pytest
import torch

from twinode.apps.early_warning import (EventSpec, apply_logistic, brier, discrimination, event_probability, fit_logistic,
                                        lead_times, reliability, trend_projection, twin_event_probability)


def test_event_probability_counts_crossing_trajectories():
    spec = EventSpec("CGM", 70.0, True, 1.0)
    s = torch.full((4, 12, 1), 100.0)
    s[0, 5, 0] = 60.0
    s[1, 11, 0] = 69.9
    assert event_probability(s, 0, spec) == 0.5
    assert event_probability(s, 0, EventSpec("CGM", 99.0, False, 1.0)) == 1.0
    assert spec.query(2.0)[0].item() == pytest.approx(2.0 + 5 / 60) and spec.query(2.0)[-1].item() == pytest.approx(3.0)


def test_trend_projection_extrapolates_the_recent_slope():
    t = np.arange(0, 1.01, 1 / 12)
    v = 150 - 60 * t  # falling 60 mg/dL per hour
    assert trend_projection(t, v, 1.0, EventSpec(horizon_h=1.0)) == pytest.approx(30.0)
    assert trend_projection(t, v, 1.0, EventSpec(below=False, horizon_h=1.0)) == pytest.approx(90.0)


def test_calibration_and_discrimination_metrics():
    y = np.array([0, 0, 1, 1], float)
    assert brier(np.array([0, 0, 1, 1.0]), y) == 0.0
    assert brier(np.full(4, 0.5), y) == 0.25
    d = discrimination(np.array([0.1, 0.2, 0.8, 0.9]), y)
    assert d["auroc"] == 1.0 and d["auprc"] == 1.0
    assert np.isnan(discrimination(np.array([0.1, 0.2]), np.array([0.0, 0.0]))["auroc"])
    rel = reliability(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1.0]), bins=10)
    assert [r["n"] for r in rel] == [2, 2] and rel[0]["observed"] == 0.5 and rel[1]["observed"] == 1.0


def test_platt_scaling_recovers_a_logistic_relation():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-(1.5 * s - 0.5)))).astype(float)
    a, b = fit_logistic(s, y)
    assert a == pytest.approx(1.5, rel=0.15) and b == pytest.approx(-0.5, abs=0.15)
    assert np.all((apply_logistic(s, (a, b)) > 0) & (apply_logistic(s, (a, b)) < 1))


def test_lead_time_is_the_unbroken_alarm_run_before_onset():
    a = np.arange(0, 3.01, 0.25)
    p = np.zeros_like(a)
    p[(a >= 1.5) & (a < 2.0)] = 0.9  # alarms at 1.5 and 1.75, onset at 2.0 -> 30 min
    assert lead_times(a, p, np.array([2.0]), 0.5, 1.0) == [pytest.approx(0.5)]
    assert lead_times(a, np.zeros_like(a), np.array([2.0]), 0.5, 1.0) == [0.0]


def test_twin_event_probability_is_a_probability(glucose_twin):
    twin, _ = glucose_twin
    t = torch.arange(0, 2, 1 / 12)
    v = torch.full((len(t), 1), 75.0)
    p = twin_event_probability(twin, t, v, torch.ones_like(v), torch.full((3,), float("nan")), torch.zeros(0, 4), 0,
                               EventSpec(), num_samples=50)
    assert 0.0 <= p <= 1.0 and p * 50 == pytest.approx(round(p * 50))

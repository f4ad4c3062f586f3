"""The bolus-calculator rule: the exponential insulin-action curve and the rule's effect."""

import numpy as np
import pytest

from twinode.evaluation.bolus_rule import insulin_acted, insulin_activity, insulin_remaining, rule_effect


def test_insulin_action_curve_peaks_at_75_min_and_is_done_after_6_h():
    t = np.arange(0.0, 400.0, 0.25)
    act = insulin_activity(t)
    assert t[np.argmax(act)] == pytest.approx(75.0, abs=0.25)
    assert np.trapezoid(act, t) == pytest.approx(1.0, rel=1e-5)
    acted = insulin_acted(t)
    assert acted[0] == 0.0 and acted[t >= 360].min() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(acted) >= -1e-12)
    # acted is the integral of the activity.
    cumulative = np.concatenate([[0.0], np.cumsum((act[1:] + act[:-1]) / 2 * np.diff(t))])
    np.testing.assert_allclose(acted, cumulative, atol=1e-5)
    assert insulin_remaining(-5.0) == 1.0 and insulin_acted(-5.0) == 0.0
    # Another curve: peak 55 min, 5 h.
    t5 = np.arange(0.0, 300.0, 0.25)
    assert t5[np.argmax(insulin_activity(t5, 55.0, 300.0))] == pytest.approx(55.0, abs=0.25)
    with pytest.raises(ValueError, match="peak"):
        insulin_acted(10.0, 200.0, 360.0)


def test_rule_effect_of_a_bolus_and_of_a_basal_change():
    T = 600
    change = np.zeros((2, T))
    change[0, 10] = 2.0  # 2 U extra at minute 10
    change[1, 100:160] = -1.5 / 60.0  # 1.5 U/h less for an hour
    cf = np.array([40.0, 50.0])
    q = np.array([10.0, 85.0, 370.0, 599.0])
    eff = rule_effect(change, cf, q)
    assert eff[0, 0] == 0.0  # nothing has acted at the dose's own minute
    assert eff[0, 1] == pytest.approx(-40.0 * 2.0 * float(insulin_acted(75.0)), rel=1e-9)
    assert eff[0, 2] == pytest.approx(-80.0) and eff[0, 3] == pytest.approx(-80.0)  # all acted after 6 h
    assert eff[1, 0] == 0.0 and eff[1, 3] == pytest.approx(+50.0 * 1.5, rel=1e-6)  # less insulin: glucose higher
    # Linear in the change.
    np.testing.assert_allclose(rule_effect(3 * change, cf, q), 3 * eff)

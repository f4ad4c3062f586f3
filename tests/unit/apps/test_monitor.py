import json
import math

import pytest
import torch

from twinode.apps.monitor import AlertRule, Monitor, z_score
from twinode.apps.online import OnlineTwin
from twinode.apps.stream import EventStream
from twinode.errors import ConfigError


def feed_all(state: OnlineTwin, rows):
    for ev in EventStream((json.dumps(r) for r in rows), state.meta):
        state.add_event(ev)


def test_incremental_state_equals_the_twins_forecast_on_the_whole_history(glucose_twin, rows_of):
    twin, meta = glucose_twin
    inc, full = OnlineTwin(twin, meta, num_samples=0), OnlineTwin(twin, meta, num_samples=0, incremental=False)
    assert inc.incremental and not full.incremental
    for s in (inc, full):
        feed_all(s, rows_of(30))
    q = torch.tensor([2.6, 3.5])
    t, v, m = inc.history()
    with torch.inference_mode():
        ref_mean, ref_std = twin.forecast(t, v, m, inc.static, inc.dose_tensor(3.5), q)
    for s in (inc, full):
        mean, std = s.predictive(q)
        torch.testing.assert_close(mean, ref_mean, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(std, ref_std, rtol=1e-5, atol=1e-4)


def test_same_time_readings_merge_into_one_row(glucose_twin):
    twin, meta = glucose_twin
    s = OnlineTwin(twin, meta, num_samples=0)
    s.add_measurement(0.0, 0, 100.0)
    s.add_measurement(0.5, 0, 110.0)
    h_once = s.h.clone()
    s.add_measurement(0.5, 0, 110.0)  # a repeat at the same time re-steps, it does not add a step
    assert len(s.times) == 2
    torch.testing.assert_close(s.h, h_once)


def test_z_scores_of_draws_from_the_predictive_distribution_are_standard_normal(glucose_twin, rows_of):
    twin, meta = glucose_twin
    s = OnlineTwin(twin, meta, num_samples=0)
    feed_all(s, rows_of(4))
    gen = torch.Generator().manual_seed(1)
    zs = []
    t = s.anchor
    for _ in range(300):
        t += 1 / 12
        mean, std = s.predictive(torch.tensor([t]))
        x = float(mean[0, 0] + std[0, 0] * torch.randn(1, generator=gen))
        zs.append(z_score(x, float(mean[0, 0]), float(std[0, 0])))
        s.add_measurement(t, 0, x)
    z = torch.tensor(zs)
    assert abs(float(z.mean())) < 0.2 and 0.85 < float(z.std()) < 1.15
    assert float((z.abs() > 3).float().mean()) < 0.02


def test_alert_rule_threshold_direction_and_consecutive():
    r = AlertRule(threshold=2.0)
    assert r.exceeds(2.5) and r.exceeds(-2.5) and not r.exceeds(1.9) and not r.exceeds(math.nan)
    assert AlertRule(threshold=2.0, direction="high").exceeds(2.5) and not AlertRule(threshold=2.0, direction="high").exceeds(-3)
    assert AlertRule(threshold=2.0, direction="low").exceeds(-3)
    with pytest.raises(ConfigError):
        AlertRule(threshold=-1)
    with pytest.raises(ConfigError):
        AlertRule(direction="up")
    with pytest.raises(ConfigError):
        AlertRule(consecutive=0)


def test_monitor_scores_each_reading_and_alerts_on_an_outlier(glucose_twin, rows_of):
    twin, meta = glucose_twin
    rows = rows_of(40)
    rows.append({"time": 40 / 12, "code": "CGM", "value": 395.0})  # far outside the band, inside valid_range
    rows.append({"time": 41 / 12, "code": "CGM", "value": 130.0})
    mon = Monitor(twin, meta, AlertRule(threshold=4.0, warmup=3), num_samples=8)
    scored = list(mon.run_stream(EventStream((json.dumps(r) for r in rows), meta)))
    assert len(scored) == 42 - 3  # every reading after the warm-up
    assert scored[-2].alert and scored[-2].z > 4.0
    assert sum(s.alert for s in scored) >= 1
    for s in scored:
        assert s.z == pytest.approx((s.value - s.mean) / s.std)
    # two in a row needed: the single outlier no longer alerts
    mon2 = Monitor(twin, meta, AlertRule(threshold=4.0, consecutive=2), num_samples=8)
    scored2 = list(mon2.run_stream(EventStream((json.dumps(r) for r in rows), meta)))
    assert not scored2[-2].alert


def test_a_reading_outside_valid_range_is_dropped_and_counted_not_scored(glucose_twin, rows_of):
    twin, meta = glucose_twin
    rows = rows_of(12) + [{"time": 1.0, "code": "CGM", "value": 600.0}]  # CGM valid_range is [39, 400]
    stream = EventStream((json.dumps(r) for r in rows), meta)
    scored = list(Monitor(twin, meta, AlertRule(warmup=3), num_samples=0).run_stream(stream))
    assert 600.0 not in [s.value for s in scored] and len(scored) == 12 - 3
    assert stream.dropped == {"out_of_range:CGM": 1}

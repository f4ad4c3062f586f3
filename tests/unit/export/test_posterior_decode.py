"""TwinPredictor's two halves (posterior once, decode per plan), the anchored twin behind the
export contract, valid ranges, and dose padding on a twin without intervention channels."""

from __future__ import annotations

import pytest
import torch

from tests.unit.export.conftest import NORMALISER, example_inputs
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.export.predictor import TwinPredictor
from twinode.models.twin import PatientTwin


def predictor(decoder: str = "anchored", n_interventions: int = 1, valid_range=None) -> TwinPredictor:
    torch.manual_seed(0)
    twin = PatientTwin(4, 3, n_interventions, latent_dim=8, hidden=16, encoder_hidden=16, risk_head=True,
                       decoder=decoder).eval()
    n = NORMALISER
    log1p = [f.transform == "log1p" for f in feature_spec().measurements]
    scale = n["dose_scale"][:n_interventions]
    return TwinPredictor(twin, n["meas_mean"], n["meas_std"], n["static_mean"], n["static_std"], scale, log1p,
                         valid_range).eval()


def test_posterior_then_decode_equals_forecast_for_each_plan():
    twin = torch.jit.script(predictor())
    times, values, mask, static, doses, query = example_inputs()
    with torch.no_grad():
        post = twin.posterior(times, values, mask, static)
        for plan in (doses, doses[:1], torch.zeros(0, 4)):
            m1, s1 = twin.decode(post, plan, query)
            m2, s2 = twin.forecast(times, values, mask, static, plan, query)
            torch.testing.assert_close(m1, m2)
            torch.testing.assert_close(s1, s2)


def test_anchored_forecast_returns_the_observation_at_its_time():
    twin = torch.jit.script(predictor())
    times, values, mask, static, doses, _ = example_inputs()
    with torch.no_grad():
        mean, std = twin.forecast(times, values, mask, static, doses, times)
    seen = mask > 0
    # HR and MAP observed at t=0 come back within the learned noise, not from a bottleneck.
    assert torch.allclose(mean[0][seen[0]], values[0][seen[0]], rtol=1e-3, atol=1e-3)
    assert bool((std > 0).all())


def test_anchored_forecast_batch_equals_per_subject_forecast():
    twin = torch.jit.script(predictor())
    times, values, mask, static, doses, query = example_inputs()
    pad_t = torch.stack([times, torch.tensor([0.0, 2.0, 99.0, -5.0])])
    pad_v = torch.stack([values, values.nan_to_num()])
    lengths, n_doses = torch.tensor([4, 2]), torch.tensor([2, 1])
    with torch.no_grad():
        mean, std = twin.forecast_batch(pad_t, pad_v, torch.stack([mask, mask]), lengths, torch.stack([static] * 2),
                                        torch.stack([doses, doses]), n_doses, torch.stack([query, query]))
        for b in range(2):
            k, kd = int(lengths[b]), int(n_doses[b])
            m1, s1 = twin.forecast(pad_t[b, :k], pad_v[b, :k], mask[:k], static, doses[:kd], query)
            torch.testing.assert_close(mean[b], m1, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(std[b], s1, rtol=1e-5, atol=1e-5)


def test_twin_without_interventions_ignores_padding_dose_rows():
    twin = torch.jit.script(predictor("latent", n_interventions=0))
    times, values, mask, static, _, query = example_inputs()
    padding = torch.zeros(2, 3, 4)  # rows past n_doses = 0: ignored by contract
    with torch.no_grad():
        mean, _ = twin.forecast_batch(times.expand(2, -1), values.expand(2, -1, -1), mask.expand(2, -1, -1),
                                      torch.tensor([4, 4]), static.expand(2, -1), padding, torch.tensor([0, 0]),
                                      query.expand(2, -1))
        single, _ = twin.forecast(times, values, mask, static, torch.zeros(0, 4), query)
    torch.testing.assert_close(mean[0], single)


def test_means_and_samples_stay_inside_the_valid_range():
    ranges = [(80.0, 81.0), None, (0.0, 0.5), (36.9, 37.1)]
    twin = torch.jit.script(predictor(valid_range=ranges))
    times, values, mask, static, doses, query = example_inputs()
    far = query + 200.0
    with torch.no_grad():
        mean, _ = twin.forecast(times, values, mask, static, doses, far)
        draws = twin.sample(times, values, mask, static, doses, far, 64, 0)
    for d, r in enumerate(ranges):
        if r is not None:
            for v in (mean[:, d], draws[..., d]):
                assert float(v.min()) >= r[0] - 1e-4 and float(v.max()) <= r[1] + 1e-4


def test_forecast_gradients_with_respect_to_doses_are_finite():
    """A plan is optimised through forecast: large values on linear channels (MAP 300 mmHg
    here) must not turn the log1p back-transform's gradient into NaN."""
    twin = torch.jit.script(predictor())
    times, values, mask, static, doses, query = example_inputs()
    values = values.clone()
    values[:, 1] = 300.0
    plan = doses.clone().requires_grad_(True)
    mean, std = twin.forecast(times, values, mask, static, plan, query)
    (mean.sum() + std.sum()).backward()
    assert plan.grad is not None and bool(torch.isfinite(plan.grad).all())


def test_streaming_steps_equal_encoding_the_whole_history():
    twin = torch.jit.script(predictor("latent"))
    times, values, mask, static, doses, query = example_inputs()
    with torch.no_grad():
        state = twin.encode_start(static)
        for i in range(times.shape[0]):
            state = twin.encode_step(state, times[i], values[i], mask[i])
        mean, std = twin.decode_draws(state, torch.zeros(1, 8), doses, query)
        ref_mean, ref_std = twin.forecast(times, values, mask, static, doses, query)
    torch.testing.assert_close(mean[0], ref_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std[0], ref_std, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="time order"):
        twin.encode_step(state, times[0], values[0], mask[0])


def test_streaming_is_refused_where_the_decoder_reads_the_history():
    twin = torch.jit.script(predictor("anchored"))
    _, _, _, static, doses, query = example_inputs()
    state = twin.encode_start(static)
    with pytest.raises(Exception, match="use forecast"):
        twin.decode_draws(state, torch.zeros(1, 8), doses, query)

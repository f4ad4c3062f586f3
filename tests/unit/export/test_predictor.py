"""TwinPredictor methods: scripted == eager, batch == single, seeded sampling, input checks."""

from __future__ import annotations

import re

import pytest
import torch

from tests.unit.export.conftest import example_inputs, make_predictor

REL = 1e-5


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs() <= REL * b.abs() + 1e-6).all())


@pytest.fixture(scope="module")
def pair():
    eager = make_predictor()
    return eager, torch.jit.script(eager)


def test_scripted_matches_eager_for_every_method(pair):
    eager, scripted = pair
    args = example_inputs()
    with torch.no_grad():
        for a, b in zip(scripted.forecast(*args), eager.forecast(*args)):
            assert a.shape == (5, 4) and _close(a, b)
        s_scr, s_eag = scripted.sample(*args, 16, 7), eager.sample(*args, 16, 7)
        assert s_scr.shape == (16, 5, 4) and _close(s_scr, s_eag)
        r_scr, r_eag = scripted.risk(*args[:5]), eager.risk(*args[:5])
        assert r_scr.dim() == 0 and 0.0 < float(r_scr) < 1.0 and _close(r_scr, r_eag)


def test_forecast_batch_equals_per_subject_forecast(pair):
    _, twin = pair
    times, values, mask, static, doses, query = example_inputs()
    # subject 0: full history and both doses; subject 1: two observations, one dose; subject 2: nothing
    pad_t = torch.stack([times, torch.tensor([0.0, 2.0, 99.0, -5.0]), torch.zeros(4)])
    pad_v = torch.stack([values, values.nan_to_num(), torch.full_like(values, float("nan"))])
    pad_m = torch.stack([mask, mask, torch.ones_like(mask)])
    lengths = torch.tensor([4, 2, 0])
    pad_d = torch.stack([doses, torch.tensor([[3.0, 0.0, 5.0, 0.0], [float("nan"), 9.0, 1.0, -1.0]]), doses])
    n_doses = torch.tensor([2, 1, 0])
    q = torch.stack([query, query + 1.0, query])
    with torch.no_grad():
        mean, std = twin.forecast_batch(pad_t, pad_v, pad_m, lengths, torch.stack([static] * 3), pad_d, n_doses, q)
        assert mean.shape == std.shape == (3, 5, 4)
        for b in range(3):
            k, kd = int(lengths[b]), int(n_doses[b])
            m1, s1 = twin.forecast(pad_t[b, :k], pad_v[b, :k], pad_m[b, :k], static, pad_d[b, :kd], q[b])
            assert _close(mean[b], m1) and _close(std[b], s1), f"subject {b}"


def test_sample_is_seeded_and_spreads_around_the_forecast(pair):
    _, twin = pair
    args = example_inputs()
    with torch.no_grad():
        a, b, c = twin.sample(*args, 400, 1), twin.sample(*args, 400, 1), twin.sample(*args, 400, 2)
        mean, std = twin.forecast(*args)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # HR (identity transform): the sample spread is at least the decoder's std, the centre near the mean
    hr = a[:, :, 0]
    assert bool((hr.std(0) >= 0.8 * std[:, 0]).all())
    assert bool(((hr.mean(0) - mean[:, 0]).abs() < 3 * hr.std(0)).all())
    assert bool((a[:, :, 2] > -1.0).all())  # log1p channel: samples stay in the channel's domain


def test_no_history_and_empty_queries(pair):
    _, twin = pair
    _, _, _, static, doses, query = example_inputs()
    empty = torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, 4)
    mean, std = twin.forecast(*empty, static, doses, query)
    assert mean.shape == (5, 4) and bool(torch.isfinite(mean).all()) and bool((std > 0).all())
    mean, std = twin.forecast(*empty, static, torch.zeros(0, 4), torch.zeros(0))
    assert mean.shape == (0, 4)


BAD = [
    ("times", lambda a: (a[0].flip(0),) + a[1:], "sorted ascending"),
    ("values", lambda a: (a[0], a[1][:, :3]) + a[2:], "values: expected shape [N, D]"),
    ("mask", lambda a: (a[0], a[1], a[2][:3]) + a[3:], "mask: expected the shape of values"),
    ("nan", lambda a: (a[0], a[1].clone().index_fill_(0, torch.tensor([0]), float("nan"))) + a[2:], "NaN or inf where mask == 1"),
    ("static", lambda a: a[:3] + (a[3][:2],) + a[4:], "static: expected shape [S] = [3]"),
    ("channel", lambda a: a[:4] + (torch.tensor([[5.0, 3.0, 1.0, 0.0]]),) + a[5:], "channel index out of range"),
    ("duration", lambda a: a[:4] + (torch.tensor([[5.0, 0.0, 1.0, -1.0]]),) + a[5:], "duration_h must be >= 0"),
    ("doses", lambda a: a[:4] + (torch.zeros(2, 3),) + a[5:], "doses: expected shape [M, 4]"),
    ("span", lambda a: a[:5] + (torch.tensor([5.0, 36000.0]),), "h from the last observation (limit 10000"),
    ("query", lambda a: a[:5] + (torch.tensor([float("inf")]),), "query_times: contains NaN or inf"),
]


@pytest.mark.parametrize("name,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_name_what_was_expected(pair, name, mutate, message):
    _, twin = pair
    with pytest.raises(torch.jit.Error, match=re.escape(message)):
        twin.forecast(*mutate(example_inputs()))


def test_batch_errors_name_the_subject(pair):
    _, twin = pair
    times, values, mask, static, doses, query = example_inputs()
    t = torch.stack([times, times.flip(0)])
    args = (t, torch.stack([values] * 2), torch.stack([mask] * 2), torch.tensor([4, 4]), torch.stack([static] * 2),
            torch.stack([doses] * 2), torch.tensor([2, 2]), torch.stack([query] * 2))
    with pytest.raises(torch.jit.Error, match="subject 1: times: must be sorted"):
        twin.forecast_batch(*args)
    with pytest.raises(torch.jit.Error, match=r"lengths: expected integers in \[0, 4\]"):
        twin.forecast_batch(*args[:3], torch.tensor([4, 5]), *args[4:])


def test_risk_without_a_risk_head_says_so():
    twin = torch.jit.script(make_predictor(risk_head=False))
    with pytest.raises(torch.jit.Error, match="this twin has no risk head"):
        twin.risk(*example_inputs()[:5])

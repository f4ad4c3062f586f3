"""Encoders: shapes, masking, padding, and the ODE-RNN's per-subject gaps."""

import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.errors import ConfigError
from twinode.models.encoders import GRUDeltaEncoder, ODERNNEncoder

D, S, L = 3, 2, 5


def make(kind, **kw):
    torch.manual_seed(0)
    if kind == "gru_delta":
        return GRUDeltaEncoder(D, S, L, hidden=8)
    return ODERNNEncoder(D, S, L, hidden=8, **kw)


KINDS = [("gru_delta", {}), ("ode_rnn", {"direction": "backward"}), ("ode_rnn", {"direction": "forward"}),
         ("ode_rnn", {"method": "euler", "ode_steps": 2})]


@pytest.mark.parametrize("kind,kw", KINDS)
def test_shapes_and_masked_values_are_ignored(kind, kw):
    enc = make(kind, **kw)
    t, x, m, length, s = toy_history()
    mean, log_std = enc(t, x, m, length, s)
    assert mean.shape == (4, L) and log_std.shape == (4, L)
    assert torch.isfinite(mean).all() and torch.isfinite(log_std).all()
    junk = torch.where(m > 0, x, torch.full_like(x, 1e3))  # change only unobserved entries
    mean2, _ = enc(t, junk, m, length, s)
    torch.testing.assert_close(mean, mean2)
    # An observed value does matter.
    x3 = x.clone()
    i, d = torch.nonzero(m[0] > 0)[0].tolist()
    x3[0, i, d] += 1.0
    assert not torch.allclose(enc(t, x3, m, length, s)[0][0], mean[0])


@pytest.mark.parametrize("kind,kw", KINDS)
def test_padded_steps_leave_the_state_alone(kind, kw):
    enc = make(kind, **kw)
    t, x, m, length, s = toy_history()
    mean, log_std = enc(t, x, m, length, s)
    # Longer padding with garbage times, values and masks beyond each length changes nothing.
    pad = 4
    t2 = torch.cat([t, t[:, -1:] + torch.rand(4, pad) * 50], 1)
    x2 = torch.cat([x, torch.randn(4, pad, D) * 100], 1)
    m2 = torch.cat([m, torch.ones(4, pad, D)], 1)
    for b in range(4):
        Lb = int(length[b])
        x2[b, Lb:] = torch.randn(x2.shape[1] - Lb, D) * 100
        m2[b, Lb:] = 1.0
    mean2, log_std2 = enc(t2, x2, m2, length, s)
    torch.testing.assert_close(mean, mean2)
    torch.testing.assert_close(log_std, log_std2)


@pytest.mark.parametrize("kind,kw", KINDS)
def test_batch_equals_each_subject_alone(kind, kw):
    enc = make(kind, **kw)
    t, x, m, length, s = toy_history(B=5, N=7)
    mean, _ = enc(t, x, m, length, s)
    for b in range(5):
        Lb = int(length[b])
        one, _ = enc(t[b:b + 1, :Lb], x[b:b + 1, :Lb], m[b:b + 1, :Lb], length[b:b + 1], s[b:b + 1])
        torch.testing.assert_close(one[0], mean[b], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("direction", ["backward", "forward"])
def test_ode_rnn_steps_each_subject_over_its_own_gaps(direction):
    """The vectorised lockstep equals a plain per-subject loop written from the paper."""
    enc = make("ode_rnn", direction=direction, method="rk4", ode_steps=3)
    t, x, m, length, s = toy_history(B=5, N=7)
    mean, _ = enc(t, x, m, length, s)
    for b in range(5):
        Lb = int(length[b])
        h = torch.tanh(enc.init_h(s[b:b + 1]))
        order = range(Lb - 1, -1, -1) if direction == "backward" else range(Lb)
        prev = float(t[b, Lb - 1] if direction == "backward" else t[b, 0])
        for i in order:
            dt = (float(t[b, i]) - prev) / enc.time_scale_h
            step = dt / 3
            for _ in range(3):  # classic RK4 on the hidden ODE
                k1 = enc.ode(h)
                k2 = enc.ode(h + 0.5 * step * k1)
                k3 = enc.ode(h + 0.5 * step * k2)
                k4 = enc.ode(h + step * k3)
                h = h + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            h = enc.cell(torch.cat([x[b:b + 1, i] * m[b:b + 1, i], m[b:b + 1, i]], -1), h)
            prev = float(t[b, i])
        span = (float(t[b, Lb - 1]) - float(t[b, 0])) / enc.time_scale_h
        q = enc.to_q(torch.cat([h, torch.tensor([[span]])], -1))
        torch.testing.assert_close(q[0, :L], mean[b], atol=1e-5, rtol=1e-5)


def test_ode_rnn_uses_the_gaps_and_the_direction():
    t, x, m, length, s = toy_history()
    back = make("ode_rnn", direction="backward")
    mean, _ = back(t, x, m, length, s)
    # Same observations, stretched gaps: the hidden ODE moves the state differently.
    stretched, _ = back(t * 3.0, x, m, length, s)
    assert not torch.allclose(mean[0], stretched[0], atol=1e-4)
    fwd = make("ode_rnn", direction="forward")
    fwd.load_state_dict(back.state_dict())
    assert not torch.allclose(fwd(t, x, m, length, s)[0][0], mean[0], atol=1e-4)


def test_no_history_gives_the_static_prior():
    """Length 0 (the predictor's empty history) leaves the initial state from the statics."""
    enc = make("ode_rnn")
    t, x, m, _, s = toy_history(B=2, N=3)
    zero = torch.zeros(2, dtype=torch.long)
    a, _ = enc(t, x, m, zero, s)
    b, _ = enc(t * 7, torch.randn_like(x), torch.ones_like(m), zero, s)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kw,key", [({"direction": "sideways"}, "encoder_direction"), ({"method": "dopri5"}, "encoder_method"),
                                    ({"ode_steps": 0}, "encoder_ode_steps"), ({"time_scale_h": 0.0}, "encoder_time_scale_h")])
def test_bad_ode_rnn_settings_name_the_config_key(kw, key):
    with pytest.raises(ConfigError, match=key):
        ODERNNEncoder(D, S, L, **kw)


def test_gru_delta_sequence_equals_its_step_by_step_updates():
    """The fused sequence call equals one ``step`` per observation from the static-seeded state."""
    enc = make("gru_delta")
    t, x, m, length, s = toy_history(B=5, N=7)
    mean, log_std = enc(t, x, m, length, s)
    for b in range(5):
        h = torch.tanh(enc.init_h(s[b:b + 1]))
        for i in range(int(length[b])):
            gap = max(float(t[b, i] - t[b, i - 1]), 0.0) if i > 0 else 0.0
            inp = torch.cat([x[b:b + 1, i] * m[b:b + 1, i], m[b:b + 1, i], torch.tensor([[gap]]).log1p()], -1)
            h = enc.step(inp, h)
        mu, ls = enc.read_out(h)
        torch.testing.assert_close(mu[0], mean[b], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ls[0], log_std[b], atol=1e-5, rtol=1e-5)

"""model.twin.encoder_doses: the encoder reads each dose channel's effect at every observation,
causally (a dose after the last observation changes nothing), through training, export and
the streaming refusal."""

import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.models import PatientTwin


def _twin(encoder_doses=True, n_interventions=2, **kw):
    torch.manual_seed(0)
    return PatientTwin(3, 2, n_interventions, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored",
                       encoder_doses=encoder_doses, **kw).eval()


def _doses(times, channel=0, amount=1.0):
    rows = [[float(t), float(channel), amount, 0.0] for t in times]
    return torch.tensor(rows).unsqueeze(0).expand(4, -1, -1).contiguous()


def test_a_past_dose_moves_the_state_and_a_later_one_does_not():
    twin = _twin()
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    none, _ = twin.encode(t, x, m, length, s_emb, torch.zeros(4, 1, 4))
    early, _ = twin.encode(t, x, m, length, s_emb, _doses([0.05]))  # before every first observation
    after, _ = twin.encode(t, x, m, length, s_emb, _doses([float(t.max()) + 1.0]))
    assert not torch.allclose(early, none)
    torch.testing.assert_close(after, none)
    # No dose table at all reads as no doses.
    torch.testing.assert_close(twin.encode(t, x, m, length, s_emb)[0], none)


def test_without_dose_channels_or_with_the_option_off_the_encoder_is_unchanged():
    plain = _twin(encoder_doses=False)
    assert not plain.encoder_doses and plain.encoder.gru.input_size == 2 * 3 + 1
    assert _twin().encoder.gru.input_size == 2 * 3 + 1 + 2
    no_channels = _twin(n_interventions=0)
    assert not no_channels.encoder_doses and no_channels.encoder.gru.input_size == 2 * 3 + 1
    # A twin built without the option holds no dose-effect parameters of its own, so checkpoints
    # from before it (built from their stored config, which lacks the key) load strictly.
    assert not any(k.startswith("history_doses.") for k in plain.state_dict())
    assert any(k.startswith("history_doses.") for k in _twin().state_dict())


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_the_ode_rnn_encoder_reads_past_doses_only(direction):
    twin = _twin(encoder="ode_rnn", encoder_direction=direction)
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    none, _ = twin.encode(t, x, m, length, s_emb, torch.zeros(4, 1, 4))
    assert not torch.allclose(twin.encode(t, x, m, length, s_emb, _doses([0.05]))[0], none)
    torch.testing.assert_close(twin.encode(t, x, m, length, s_emb, _doses([float(t.max()) + 1.0]))[0], none)
    scripted = torch.jit.script(twin)
    d = _doses([0.05])
    torch.testing.assert_close(scripted.encode(t, x, m, length, s_emb, d)[0], twin.encode(t, x, m, length, s_emb, d)[0])


def test_scripted_twin_reads_the_doses_as_the_eager_one():
    twin = _twin()
    scripted = torch.jit.script(twin)
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    d = _doses([0.05, 2.0], channel=1, amount=0.7)
    torch.testing.assert_close(scripted.encode(t, x, m, length, s_emb, d)[0], twin.encode(t, x, m, length, s_emb, d)[0])


def test_exported_twin_encodes_with_the_doses_and_refuses_streaming():
    from twinode.export.predictor import TwinPredictor
    from twinode.export.torchscript import streams

    twin = _twin()
    pred = TwinPredictor(twin, [0.0] * 3, [1.0] * 3, [0.0] * 2, [1.0] * 2, [1.0, 1.0], [False] * 3)
    assert not streams(pred)
    scripted = torch.jit.script(pred)
    times = torch.tensor([1.0, 2.0, 4.0])
    values, mask = torch.randn(3, 3), torch.ones(3, 3)
    static = torch.zeros(2)
    past = torch.tensor([[0.5, 0.0, 2.0, 0.0]])
    with_past = scripted.posterior(times, values, mask, static, past)["z_mean"]
    without = scripted.posterior(times, values, mask, static)["z_mean"]
    assert not torch.allclose(with_past, without)
    # forecast reads the same plan: a later dose moves the forecast, not the encoding.
    later = torch.tensor([[0.5, 0.0, 2.0, 0.0], [5.0, 0.0, 2.0, 0.0]])
    torch.testing.assert_close(scripted.posterior(times, values, mask, static, later)["z_mean"], with_past)
    q = torch.tensor([6.0, 8.0])
    a, _ = scripted.forecast(times, values, mask, static, later, q)
    b, _ = scripted.forecast_batch(times.unsqueeze(0), values.unsqueeze(0), mask.unsqueeze(0), torch.tensor([3]),
                                   static.unsqueeze(0), later.unsqueeze(0), torch.tensor([2]), q.unsqueeze(0))
    torch.testing.assert_close(a, b[0])
    state = scripted.encode_start(static)
    with pytest.raises(Exception, match="reads the doses"):
        scripted.encode_step(state, torch.tensor(1.0), values[0], mask[0])

"""The anchored twin: anchors against a brute-force search, the decoder's behaviour at and
away from observations, scripting, and training that beats carry-forward on a toy cohort."""

import math

import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.models import PatientTwin
from twinode.models.anchoring import channel_anchors, history_stats, last_values
from twinode.models.decoders import AnchoredDecoder


def brute_anchors(t, x, m, length, tq):
    B, N, D = x.shape
    out = [torch.zeros(B, tq.shape[1], D) for _ in range(6)]
    for b in range(B):
        L = int(length[b])
        for q in range(tq.shape[1]):
            for d in range(D):
                obs = [i for i in range(L) if m[b, i, d] > 0]
                before = [i for i in obs if t[b, i] <= tq[b, q]]
                after = [i for i in obs if t[b, i] > tq[b, q]]
                if before:
                    i = before[-1]
                    out[0][b, q, d], out[1][b, q, d], out[2][b, q, d] = x[b, i, d], tq[b, q] - t[b, i], 1.0
                if after:
                    i = after[0]
                    out[3][b, q, d], out[4][b, q, d], out[5][b, q, d] = x[b, i, d], t[b, i] - tq[b, q], 1.0
    return out


def test_channel_anchors_match_a_brute_force_search():
    t, x, m, length, _ = toy_history(B=5, N=9, D=3, seed=3)
    tq = torch.cat([t[:, :4] + 0.05, t[:, 2:3], t[:, -1:] + 2.0, torch.zeros(5, 1)], 1)
    got = channel_anchors(t, x, m, length, tq)
    want = brute_anchors(t, x, m, length, tq)
    for g, w, name in zip(got, want, ["prev", "age", "prev_ok", "next", "gap", "next_ok"]):
        torch.testing.assert_close(g, w, msg=name)


def test_history_stats_and_last_values_ignore_padding():
    t, x, m, length, _ = toy_history(B=4, N=6, D=3, seed=1)
    mean, cnt = history_stats(x, m, length)
    last, when, seen = last_values(t, x, m, length)
    for b in range(4):
        L = int(length[b])
        for d in range(3):
            obs = [i for i in range(L) if m[b, i, d] > 0]
            assert cnt[b, d] == len(obs)
            if obs:
                assert math.isclose(float(mean[b, d]), float(x[b, obs, d].mean()), rel_tol=1e-5, abs_tol=1e-6)
                assert float(last[b, d]) == float(x[b, obs[-1], d]) and float(when[b, d]) == float(t[b, obs[-1]])
            else:
                assert seen[b, d] == 0


def _decoder_inputs(D=2, Q=4):
    dec = AnchoredDecoder(latent_dim=3, n_measurements=D, hidden=8).eval()
    z_a = torch.zeros(1, 3)
    level, k, sp = dec.subject_params(z_a, torch.full((1, D), 0.5), torch.full((1, D), 4.0), torch.ones(1, D), torch.zeros(1, D))
    return dec, level, k, sp


z_a = torch.zeros(1, 3)


def call(dec, zq, level, k, sp, pv, pa, po, nv, ng, no, zh=None):
    """The decoder with one history point (index 0, latent state ``zh``) behind every anchor."""
    zh = torch.zeros(zq.shape[0], 1, zq.shape[2]) if zh is None else zh
    idx = torch.zeros(pv.shape, dtype=torch.long)
    return dec(zq, zh, level, k, sp, idx, pv, pa, po, idx, nv, ng, no)


def test_decoder_returns_the_observation_at_its_time_and_relaxes_toward_the_level():
    dec, level, k, sp = _decoder_inputs()
    zq = torch.zeros(1, 4, 3)
    ages = torch.tensor([0.0, 1.0, 10.0, 1000.0]).view(1, 4, 1).expand(1, 4, 2)
    prev = torch.full((1, 4, 2), 2.0)
    ones, zeros = torch.ones(1, 4, 2), torch.zeros(1, 4, 2)
    mean, log_std = call(dec, zq, level, k, sp, prev, ages, ones, zeros, zeros, zeros)
    assert torch.allclose(mean[0, 0], prev[0, 0], atol=1e-4)  # at the observation: the observation
    gaps = (mean[0, :, 0] - level[0, 0]).abs()
    assert bool((gaps[1:] < gaps[:-1]).all())  # monotone relaxation toward the level
    assert torch.allclose(mean[0, -1], level[0], atol=1e-4)
    std = log_std.exp()[0, :, 0]
    assert bool((std[1:] > std[:-1]).all())  # uncertainty grows with distance from the data


def test_decoder_bridges_between_the_observations_around_a_query():
    dec, level, k, sp = _decoder_inputs(D=1, Q=1)
    zq = torch.zeros(1, 1, 3)
    one = torch.ones(1, 1, 1)
    mean_near_next, _ = call(dec, zq, level, k, sp, 0.0 * one, 5.0 * one, one, 3.0 * one, 0.01 * one, one)
    assert abs(float(mean_near_next) - 3.0) < 0.05
    m_fwd, s_fwd = call(dec, zq, level, k, sp, 1.0 * one, 2.0 * one, one, 0 * one, 0 * one, 0 * one)
    m_both, s_both = call(dec, zq, level, k, sp, 1.0 * one, 2.0 * one, one, 1.0 * one, 2.0 * one, one)
    assert float(s_both) < float(s_fwd)  # a second observation narrows the interval


def test_unseen_channel_is_the_level_with_the_process_spread():
    dec, level, k, sp = _decoder_inputs()
    zeros = torch.zeros(1, 2, 2)
    mean, log_std = call(dec, torch.zeros(1, 2, 3), level, k, sp, zeros, zeros, zeros, zeros, zeros, zeros)
    torch.testing.assert_close(mean[0, 0], level[0])
    sn = dec.log_sn.exp()
    torch.testing.assert_close(log_std.exp()[0, 0], (sp[0] ** 2 + sn ** 2).sqrt())


def test_anchored_twin_needs_the_history_and_scripts():
    torch.manual_seed(0)
    twin = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, risk_head=True, decoder="anchored").eval()
    t, x, m, length, s = toy_history(B=3, N=5, D=3, S=2)
    s_emb = twin.embed_static(s, torch.ones_like(s))
    z, _ = twin.encode(t, x, m, length, s_emb)
    anchor = t.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    doses = torch.zeros(3, 1, 4)
    with pytest.raises(RuntimeError, match="pass hist_t"):
        twin.decode_at(z, anchor, t, doses, s_emb)
    scripted = torch.jit.script(twin)
    a = twin.decode_at(z, anchor, t, doses, s_emb, t, x, m, length)
    b = scripted.decode_at(z, anchor, t, doses, s_emb, t, x, m, length)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v)
    torch.testing.assert_close(twin.risk_logit(z, s_emb, t, x, m, length), scripted.risk_logit(z, s_emb, t, x, m, length))


def test_unknown_decoder_is_a_config_error():
    from twinode.errors import ConfigError

    with pytest.raises(ConfigError, match="decoder"):
        PatientTwin(3, 2, 1, decoder="nope")


def test_a_change_of_the_latent_path_reaches_the_forecast_whole_right_after_an_observation():
    """What a dose does to z(t) is not damped near an observation: the level moves, the anchor
    offset stays, so the forecast moves by exactly the change of the deviation."""
    torch.manual_seed(0)
    dec, level, k, sp = _decoder_inputs(D=2)
    with torch.no_grad():
        dec.deviation[2].weight.normal_()
    one, zero = torch.ones(1, 1, 2), torch.zeros(1, 1, 2)
    base = call(dec, torch.zeros(1, 1, 3), level, k, sp, one, 0.1 * one, one, zero, zero, zero)[0]
    dosed_z = torch.tensor([[[0.5, -0.3, 0.2]]])
    dosed = call(dec, dosed_z, level, k, sp, one, 0.1 * one, one, zero, zero, zero)[0]
    shift = dec.deviation(dosed_z)[..., :2] - dec.deviation(torch.zeros(1, 1, 3))[..., :2]
    torch.testing.assert_close(dosed - base, shift)
    assert float(shift.abs().min()) > 1e-3



def test_anchored_twin_returns_every_history_observation_at_its_time():
    """Queries at the history's own times give back its observations (the level's move is
    taken at each observation's own time, not the anchor's)."""
    torch.manual_seed(1)
    twin = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored").eval()
    with torch.no_grad():
        for p in twin.decoder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    t, x, m, length, s = toy_history(B=3, N=6, D=3, S=2, seed=4)
    s_emb = twin.embed_static(s, torch.ones_like(s))
    z, _ = twin.encode(t, x, m, length, s_emb)
    anchor = t.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        mean, _ = twin.decode_at(z, anchor, t, torch.zeros(3, 1, 4), s_emb, t, x, m, length)
    live = (torch.arange(6).unsqueeze(0) < length.unsqueeze(1)).unsqueeze(-1) & (m > 0)
    torch.testing.assert_close(mean[live], x[live], rtol=1e-4, atol=1e-4)


def test_prior_penalty_is_zero_at_the_prior_and_grows_away_from_it():
    dec = AnchoredDecoder(latent_dim=3, n_measurements=2, hidden=8, rate_per_h=0.05)
    assert float(dec.prior_penalty()) == 0.0
    with torch.no_grad():
        dec.log_k[0] += 1.0
        dec.subject[-1].weight[1, 0] = 2.0
    assert abs(float(dec.prior_penalty()) - 5.0) < 1e-6
    torch.jit.script(dec)  # the penalty is a training-time method: the module still scripts


def test_build_twin_starts_each_dose_channel_from_the_spec_peak_time(tmp_path):
    from omegaconf import OmegaConf

    from tests.conftest import compose_train
    from twinode.checkpoint import build_twin
    from twinode.data.schema import FeatureSpec
    from twinode.models.dynamics import DoseEffect

    cfg = compose_train(tmp_path, ["data=glucose"])
    spec = FeatureSpec.from_dict(OmegaConf.to_container(cfg.data.source.spec, resolve=True))
    dims = {"n_measurements": 1, "n_static": len(spec.statics), "n_interventions": len(spec.interventions)}
    twin = build_twin(cfg, dims, spec, trust=True)
    effect = next(m for m in twin.modules() if isinstance(m, DoseEffect))
    ka, ke = torch.exp(effect.log_ka), torch.exp(effect.log_k)
    peaks = torch.log(ka / ke) / (ka - ke)  # the Bateman curve's peak time
    want = torch.tensor([f.effect_peak_h for f in spec.interventions])
    torch.testing.assert_close(peaks, want, rtol=1e-3, atol=1e-3)


def test_ode_rnn_encoder_says_streaming_needs_the_gru():
    twin = torch.jit.script(PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, encoder="ode_rnn"))
    with pytest.raises(Exception, match="gru_delta"):
        twin.encoder.init_state(torch.zeros(1, 8))


def test_subject_head_dropout_acts_in_training_only_and_scripts():
    twin = PatientTwin(3, 2, 0, latent_dim=4, hidden=8, decoder="anchored", anchor_dropout=0.5)
    z = torch.randn(6, 4)
    args = (z, torch.randn(6, 3), torch.full((6, 3), 2.0), torch.randn(6, 3), torch.ones(6, 3))
    for layer in (twin.decoder.subject[-1],):  # a non-zero head, so dropped inputs show
        torch.nn.init.normal_(layer.weight)
    twin.train()
    torch.manual_seed(0)
    a = twin.decoder.subject_params(*args)[0]
    b = twin.decoder.subject_params(*args)[0]
    assert not torch.allclose(a, b)
    twin.eval()
    torch.testing.assert_close(twin.decoder.subject_params(*args)[0], twin.decoder.subject_params(*args)[0])
    scripted = torch.jit.script(twin.decoder)
    torch.testing.assert_close(scripted.subject_params(*args)[0], twin.decoder.subject_params(*args)[0])

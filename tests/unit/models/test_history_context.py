"""The history context (model.twin.anchor_context_hidden): forward and backward GRU states
around a query inside the history correct the anchored bridge there, and nowhere else."""

import torch

from tests.unit.models._toy import toy_history
from twinode.models import PatientTwin
from twinode.models.anchoring import reverse_live
from twinode.models.history_context import HistoryContext


def test_reverse_live_reverses_each_subject_and_keeps_the_padding():
    t, x, m, length, _ = toy_history()
    r = reverse_live(x, length)
    for b in range(x.shape[0]):
        n = int(length[b])
        torch.testing.assert_close(r[b, :n], x[b, :n].flip(0))
        torch.testing.assert_close(r[b, n:], x[b, n:])
    torch.testing.assert_close(reverse_live(r, length), x)
    torch.testing.assert_close(reverse_live(t, length)[0], t[0].flip(0))  # subject 0 has no padding


def _context():
    torch.manual_seed(0)
    ctx = HistoryContext(3, 6, 8)
    with torch.no_grad():
        for p in ctx.out[-1].parameters():
            p.normal_()
    return ctx


def test_only_queries_between_history_times_get_a_correction():
    ctx = _context()
    t, x, m, length, _ = toy_history()
    last = t.gather(1, (length - 1).unsqueeze(1))
    tq = torch.cat([t[:, :1] - 1.0, (t[:, :1] + t[:, 1:2]) / 2, last + 2.0], dim=1)
    corr, inside = ctx(t, x, m, length, tq)
    assert corr.shape == (4, 3, 3)
    assert (corr[:, 0] == 0).all() and (corr[:, 2] == 0).all()  # before the first, after the last time
    long_enough = length > 1
    assert (inside[long_enough, 1] == 1).all() and corr[long_enough, 1].abs().sum() > 0


def test_the_backward_state_reads_only_what_comes_after():
    ctx = _context()
    t, x, m, length, _ = toy_history()
    h_f, h_b = ctx.states(t, x, m, length)
    x2 = x.clone()
    x2[0, -1] += 1.0  # the last observation of subject 0 (no padding)
    m2 = m.clone()
    m2[0, -1] = 1.0
    g_f, g_b = ctx.states(t, x2, m2, length)
    torch.testing.assert_close(g_f[0, :-1], h_f[0, :-1])  # the forward filter has not seen it yet
    assert not torch.allclose(g_b[0, 0], h_b[0, 0])  # the backward one has, at every earlier index


def _encoded(twin):
    """The toy history encoded by ``twin``: state, anchor time, no doses, statics' embedding, history."""
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    z, _ = twin.encode(t, x, m, length, s_emb)
    anchor = t.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    return z, anchor, torch.zeros(4, 1, 4), s_emb, (t, x, m, length)


def test_the_twin_keeps_each_observation_and_scripts_with_a_context():
    torch.manual_seed(0)
    twin = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored",
                       anchor_context_hidden=6).eval()
    plain = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored").eval()
    twin.load_state_dict(plain.state_dict(), strict=False)
    z, anchor, doses, s_emb, (t, x, m, length) = _encoded(twin)
    tq = torch.cat([t + 0.3, t + 40.0], dim=1)
    before = twin.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0]
    torch.testing.assert_close(before, plain.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0])  # starts at 0
    with torch.no_grad():
        for p in twin.decoder.context.out[-1].parameters():
            p.normal_()
    after = twin.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0]
    assert not torch.allclose(after, before)
    at_obs = twin.decode_at(z, anchor, t, doses, s_emb, t, x, m, length)[0]
    torch.testing.assert_close(at_obs * m, x * m, rtol=1e-3, atol=1e-3)
    scripted = torch.jit.script(twin)
    torch.testing.assert_close(scripted.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0], after)


def test_the_prior_penalty_holds_the_context_correction_at_zero():
    torch.manual_seed(0)
    twin = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored",
                       anchor_context_hidden=6)
    assert float(twin.decoder.prior_penalty()) == 0.0
    with torch.no_grad():
        twin.decoder.context.out[-1].bias.fill_(0.5)
    assert float(twin.decoder.prior_penalty()) > 0.0


def test_the_forecast_head_corrects_queries_after_the_history_only_when_asked():
    torch.manual_seed(0)
    ctx = HistoryContext(3, 6, 8, forecast=True)
    t, x, m, length, _ = toy_history()
    last = t.gather(1, (length - 1).unsqueeze(1))
    tq = torch.cat([t[:, :1] - 1.0, (t[:, :1] + t[:, 1:2]) / 2, last + 2.0, last + 20.0], dim=1)
    assert ctx(t, x, m, length, tq)[0].abs().sum() == 0  # zero-initialised: a no-op until trained
    assert float(ctx.output_penalty()) == 0.0
    with torch.no_grad():
        ctx.ahead[-1].bias.fill_(0.5)
        ctx.ahead[-1].weight.normal_()
    assert float(ctx.output_penalty()) > 0.0
    corr, _ = ctx(t, x, m, length, tq)
    assert (corr[:, 0] == 0).all() and (corr[:, 1] == 0).all()  # before and inside: the forecast head is silent
    assert (corr[:, 2] != 0).all() and not torch.allclose(corr[:, 2], corr[:, 3])  # after: it depends on the horizon
    # Only the history up to its last live time matters: padding values do not move it.
    x2 = x.clone()
    short = int(torch.argmin(length))
    x2[short, int(length[short]):] += 5.0
    torch.testing.assert_close(ctx(t, x2, m, length, tq)[0][short], corr[short])


def test_a_twin_with_the_forecast_head_scripts_and_keeps_its_forecast_at_first():
    torch.manual_seed(0)
    kw = dict(latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored", anchor_context_hidden=6)
    twin = PatientTwin(3, 2, 1, anchor_context_forecast=True, **kw).eval()
    plain = PatientTwin(3, 2, 1, **kw).eval()
    plain.load_state_dict(twin.state_dict(), strict=False)
    z, anchor, doses, s_emb, (t, x, m, length) = _encoded(twin)
    tq = anchor.unsqueeze(1) + torch.tensor([[1.0, 6.0, 24.0]])
    before = twin.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0]
    torch.testing.assert_close(before, plain.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0])
    with torch.no_grad():
        twin.decoder.context.ahead[-1].bias.fill_(0.5)
    after = twin.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0]
    assert (after - before).abs().amin() > 0  # every forecast moves
    scripted = torch.jit.script(twin)
    torch.testing.assert_close(scripted.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length)[0], after)


def test_without_the_forecast_head_no_extra_random_draws_are_made():
    # A twin without the option starts from the same weights as before the option existed:
    # building the context draws only for its two GRUs and its output MLP.
    torch.manual_seed(0)
    HistoryContext(3, 6, 8)
    after_context = torch.rand(4)
    torch.manual_seed(0)
    torch.nn.GRU(7, 6, batch_first=True), torch.nn.GRU(7, 6, batch_first=True)
    torch.nn.Linear(8, 3), torch.nn.Linear(14, 8)
    torch.testing.assert_close(after_context, torch.rand(4))
    torch.manual_seed(0)
    HistoryContext(3, 6, 8, forecast=True)
    assert not torch.allclose(after_context, torch.rand(4))  # the head, when asked for, does draw

"""Kernel-smoothed anchors (model.twin.anchor_smoothing_h): the two-scan smoother equals the
brute-force weighted mean, the twin starts exactly as the unsmoothed one and scripts, and
checkpoints from before the option load."""

import torch

from tests.unit.models._toy import toy_history
from twinode.models import PatientTwin
from twinode.models.anchoring import smoothed_values


def _brute(t, x, m, length, taus):
    B, N, D = x.shape
    out = torch.zeros(B, N, D, len(taus))
    for b in range(B):
        live = torch.arange(N) < length[b]
        for i in range(N):
            for j, tau in enumerate(taus):
                w = torch.exp(-(t[b] - t[b, i]).abs() / tau).unsqueeze(-1) * m[b] * live.unsqueeze(-1)
                tot = w.sum(0)
                out[b, i, :, j] = torch.where(tot > 1e-12, (w * x[b]).sum(0) / tot.clamp(min=1e-12), torch.zeros(D))
    return out


def test_smoothed_values_equal_the_weighted_mean_over_both_sides():
    t, x, m, length, _ = toy_history(B=4, N=7, D=3)
    taus = torch.tensor([0.5, 2.0, 8.0])
    got = smoothed_values(t, x, m, length, taus)
    torch.testing.assert_close(got, _brute(t, x, m, length, taus.tolist()), rtol=1e-5, atol=1e-5)
    # A wide kernel reads the channel's history mean; a narrow one the observation itself.
    wide = smoothed_values(t, x, m, length, torch.tensor([1e6]))[..., 0]
    b, d = 0, 0
    seen = m[b, :, d] > 0
    torch.testing.assert_close(wide[b, seen, d], x[b, seen, d].mean().expand(int(seen.sum())), rtol=1e-4, atol=1e-4)
    narrow = smoothed_values(t, x, m, length, torch.tensor([1e-3]))[..., 0]
    torch.testing.assert_close(narrow[b, seen, d], x[b, seen, d])
    torch.testing.assert_close(torch.jit.script(smoothed_values)(t, x, m, length, taus), got)


def test_smoothed_values_stay_exact_on_long_histories_and_large_values():
    # Weeks of history, far from time 0, values of any sign and size: the log-space sums neither
    # overflow nor lose the nearby points to the far ones.
    t, x, m, length, _ = toy_history(B=4, N=7, D=3)
    t = 5000.0 + t * 60.0
    x = x * 300.0 - 50.0
    taus = torch.tensor([0.5, 8.0, 200.0])
    got = smoothed_values(t, x, m, length, taus)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, _brute(t, x, m, length, taus.tolist()), rtol=1e-4, atol=1e-3)


def _twins():
    torch.manual_seed(0)
    plain = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored").eval()
    smooth = PatientTwin(3, 2, 1, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored",
                         anchor_smoothing_h=[0.5, 2.0]).eval()
    # A checkpoint from before the option holds no smoothing entries: they start at 0.
    state = {k: v for k, v in plain.state_dict().items() if "smooth" not in k}
    smooth.load_state_dict(state)
    return plain, smooth


def _decode(twin, tq_shift=0.3):
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    z, _ = twin.encode(t, x, m, length, s_emb)
    anchor = t.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    args = (z, anchor, t + tq_shift, torch.zeros(4, 1, 4), s_emb, t, x, m, length)
    return twin, args


def test_smoothing_starts_as_the_plain_twin_and_moves_it_once_learned():
    plain, smooth = _twins()
    assert smooth.decoder.smooth.abs().sum() == 0
    _, args = _decode(plain)
    base = plain.decode_at(*args)[0]
    torch.testing.assert_close(smooth.decode_at(*args)[0], base)
    with torch.no_grad():
        smooth.decoder.smooth.fill_(0.4)
    moved = smooth.decode_at(*args)[0]
    assert not torch.allclose(moved, base)
    torch.testing.assert_close(torch.jit.script(smooth).decode_at(*args)[0], moved)
    # The penalty pulls the weights back toward 0.
    assert smooth.decoder.prior_penalty() > plain.decoder.prior_penalty()

"""The fitted channel prior: the fit recovers a generating decay, an anchored twin started
from it forecasts as decay-to-mean does, older checkpoints load unchanged, and the training
module fits it before the first step."""

import math

import numpy as np
import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.data.collate import collate_windows
from twinode.data.tensorize import SubjectRecord
from twinode.data.windows import ForecastWindows
from twinode.evaluation.baselines import Anchors, DecayToMean
from twinode.models import PatientTwin
from twinode.models.channel_prior import fit_channel_decay


def _records(n=150, half_life=(4.0, 48.0), seed=0):
    """Two channels, each relaxing from a jump at the cut toward w x its history level."""
    rng = np.random.default_rng(seed)
    recs = []
    t = np.arange(0.0, 48.0, 1.0)
    for i in range(n):
        level = rng.normal(size=2)
        x = np.where((t <= 24.0)[:, None], level + rng.normal(scale=0.05, size=(t.size, 2)), 0.0)
        x[24] = level + 2.0
        for d, hl in enumerate(half_life):
            after = t > 24.0
            x[after, d] = 0.5 * level[d] + (level[d] + 2.0 - 0.5 * level[d]) * np.exp(-math.log(2) / hl * (t[after] - 24.0))
        v = x.astype(np.float32)
        recs.append(SubjectRecord(i, t.astype(np.float32), v, np.ones_like(v), np.zeros((0, 4), np.float32),
                                  np.zeros(0, np.float32)))
    return recs


def test_fit_recovers_each_channels_half_life_and_weight():
    batches = [collate_windows(list(ForecastWindows(_records(), 24.0, 48.0, "fixed")))]
    w, k = fit_channel_decay(batches, 2)
    assert torch.allclose(math.log(2.0) / k, torch.tensor([4.0, 48.0]), rtol=1e-4)
    assert torch.allclose(w, torch.tensor([0.5, 0.5]), atol=0.11)


def test_a_channel_without_targets_is_carried_forward():
    recs = _records(20)
    for r in recs:
        r.mask[:, 1] = 0.0
    w, k = fit_channel_decay([collate_windows(list(ForecastWindows(recs, 24.0, 48.0, "fixed")))], 2)
    assert float(w[1]) == 1.0 and math.log(2.0) / float(k[1]) >= 1e5


def test_a_twin_started_from_the_prior_forecasts_as_decay_to_mean():
    recs = _records(40)
    batch = collate_windows(list(ForecastWindows(recs, 24.0, 48.0, "fixed")))
    w, k = fit_channel_decay([batch], 2)
    twin = PatientTwin(2, 0, 0, latent_dim=4, hidden=8, decoder="anchored").eval()
    twin.decoder.set_channel_prior(w, k, n0=1e-6)
    hist = (batch.hist_t, batch.hist_x, batch.hist_m, batch.hist_len)
    with torch.no_grad():
        s_emb = twin.embed_static(batch.static, batch.static_m)
        z, _ = twin.encode(*hist, s_emb)
        mean, _ = twin.decode_at(z, batch.anchor, batch.tgt_t, batch.doses, s_emb, *hist)
    want = DecayToMean(w, k)(Anchors(*hist, batch.tgt_t))
    sel = batch.tgt_m > 0
    torch.testing.assert_close(mean[sel], want[sel], atol=1e-4, rtol=1e-4)
    assert float(twin.decoder.prior_penalty().detach()) == 0.0


def test_checkpoints_without_the_prior_load_with_the_old_behaviour():
    twin = PatientTwin(3, 2, 0, latent_dim=4, hidden=8, decoder="anchored", anchor_rate_per_h=0.02)
    old = {k: v for k, v in twin.state_dict().items()
           if not k.endswith(("decoder.w", "w_prior", "log_k_prior", "raw_n0_prior"))}
    fresh = PatientTwin(3, 2, 0, latent_dim=4, hidden=8, decoder="anchored", anchor_rate_per_h=0.02)
    fresh.decoder.set_channel_prior(torch.full([3], 0.3), torch.full([3], 0.5))
    fresh.load_state_dict(old)  # strict: every key is there after the defaults fill in
    assert torch.equal(fresh.decoder.w, torch.ones(3))
    assert torch.allclose(fresh.decoder.log_k_prior, torch.full([3], math.log(0.02)))
    t, x, m, length, s = toy_history(B=2, N=5, D=3, S=2)
    assert fresh.decoder.w.shape == (3,) and torch.isfinite(fresh.decoder.prior_penalty())


def test_training_fits_the_prior_before_the_first_step(tmp_path):
    from tests.conftest import COARSE, FAST, set_up_lit

    lit, dm = set_up_lit(tmp_path, FAST + COARSE + ["model=anchored_ode", "data.source.n_patients=40",
                                                    "model.lit.channel_prior=fitted"])
    w, k = fit_channel_decay(dm.forecast_batches("train"), dm.dims["n_measurements"])
    torch.testing.assert_close(lit.twin.decoder.w_prior, w)
    torch.testing.assert_close(lit.twin.decoder.log_k_prior, torch.log(k))
    assert lit.metadata["channel_prior"]["w"] == w.tolist()
    assert not torch.allclose(lit.twin.decoder.log_k_prior, torch.full_like(k, lit.twin.decoder.default_log_k))


def test_channel_balance_weights_rare_channels_up_and_keeps_the_loss_size():
    from twinode.training.lit_module import channel_balance

    recs = _records(10)
    for r in recs:
        r.mask[::4, 1] = 1.0
        r.mask[np.arange(len(r.times)) % 4 != 0, 1] = 0.0  # channel 1 seen a quarter as often
    w = channel_balance(recs, 1.0)
    cnt = torch.tensor([sum(float(r.mask[:, d].sum()) for r in recs) for d in range(2)])
    assert float(w[1] / w[0]) == pytest.approx(4.0, rel=1e-4)
    assert float((w * cnt).sum() / cnt.sum()) == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(channel_balance(recs, 0.0), torch.ones(2))

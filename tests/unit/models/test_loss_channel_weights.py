"""model.lit.channel_weights=minmax: each channel's likelihood and squared error weighted by
what a unit of error on the training scale counts once min-max scaled in original units."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from twinode.data.tensorize import SubjectRecord
from twinode.training.lit_module import TwinLitModule, minmax_channel_weights


def _records(n=30, seed=0):
    """Channel 0 spread evenly over its range; channel 1 as spread but with one far outlier that
    stretches its range tenfold, so its errors count far less once min-max scaled."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        x = rng.uniform(-1.0, 1.0, size=(20, 2)).astype(np.float32)
        if i == 0:
            x[0, 1] = 19.0
        recs.append(SubjectRecord(i, np.arange(20, dtype=np.float32), x, np.ones_like(x),
                                  np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
    return recs


def _spec_and_norm():
    spec = SimpleNamespace(measurements=[SimpleNamespace(transform="none"), SimpleNamespace(transform="none")])
    norm = SimpleNamespace(meas_mean=np.zeros(2, np.float32), meas_std=np.ones(2, np.float32))
    return spec, norm


def test_weights_follow_the_min_max_scale_and_keep_the_loss_size():
    recs = _records()
    spec, norm = _spec_and_norm()
    w = minmax_channel_weights(recs, spec, norm, floor=0.0)
    values = np.concatenate([r.values for r in recs])
    span = values.max(0) - values.min(0)
    want = 1.0 / span**2  # the variance ratio of a linear rescaling
    want = want * 2 / want.sum()  # every channel is observed equally often
    torch.testing.assert_close(w, torch.tensor(want, dtype=torch.float32), rtol=1e-4, atol=1e-6)
    assert float(w[0]) > 10 * float(w[1])
    assert float(w.mean()) == pytest.approx(1.0, rel=1e-5)
    assert float(minmax_channel_weights(recs, spec, norm, floor=0.5)[1]) == 0.5


def test_an_unknown_weighting_is_refused():
    from twinode.models import PatientTwin

    twin = PatientTwin(2, 0, 0, latent_dim=4, hidden=8, decoder="anchored")
    with pytest.raises(ValueError, match="channel_weights"):
        TwinLitModule(twin, channel_weights="count")


def test_training_weighs_the_likelihood_and_validation_does_not(tmp_path):
    from tests.conftest import COARSE, FAST, set_up_lit

    lit, dm = set_up_lit(tmp_path, FAST + COARSE + ["model=anchored_ode", "data.source.n_patients=40",
                                                    "model.lit.channel_weights=minmax"])
    w = minmax_channel_weights(dm.splits["train"], dm.spec, dm.normaliser)
    torch.testing.assert_close(lit._loss_channel_w, w)
    assert lit.metadata["loss_channel_weights"] == w.tolist()
    batch = next(iter(dm.train_dataloader()))
    lit.train()
    with torch.no_grad():
        weighted = float(lit._objective(batch, sample=False)["loss"])
        lit._loss_channel_w = torch.ones_like(w)
        alike = float(lit._objective(batch, sample=False)["loss"])
        lit._loss_channel_w = w
        lit.eval()
        val = float(lit._objective(batch, sample=False)["loss"])
    assert weighted != pytest.approx(alike, rel=1e-6)
    assert val == pytest.approx(alike, rel=1e-6)  # validation scores every target alike

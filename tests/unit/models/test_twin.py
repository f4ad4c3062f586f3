"""PatientTwin: scripted == eager per encoder, the exported predictor, variational vs
deterministic objectives, and a risk head that learns a separable outcome."""

import functools

import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.export.torchscript import build_predictor
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.errors import ConfigError
from twinode.models import PatientTwin
from twinode.models.mechanistic import VasopressorMAP

VARIANTS = {
    "gru_delta": {"encoder": "gru_delta"},
    "ode_rnn": {"encoder": "ode_rnn"},
    "ode_rnn_forward_euler": {"encoder": "ode_rnn", "encoder_direction": "forward", "encoder_method": "euler"},
    "hybrid": {"encoder": "ode_rnn", "mechanistic": functools.partial(VasopressorMAP)},
}


def twin_args(seed=0):
    t, x, m, length, s = toy_history(B=4, N=6, D=4, S=3, seed=seed)
    anchor = t.gather(1, (length - 1).unsqueeze(1)).squeeze(1)
    doses = torch.tensor([[[1.0, 0.0, 1.5, 0.0], [4.0, 0.0, 0.5, 2.0]]] * 4)
    tq = torch.cat([t, anchor.unsqueeze(1) + torch.tensor([[1.0, 5.0, 12.0]])], 1)  # before and after the anchor
    return t, x, m, length, anchor, s, torch.ones(4, 3), doses, tq


@pytest.mark.parametrize("name", list(VARIANTS))
def test_scripted_twin_equals_eager(name):
    torch.manual_seed(0)
    twin = PatientTwin(4, 3, 1, latent_dim=6, hidden=16, encoder_hidden=16, risk_head=True, **VARIANTS[name]).eval()
    args = twin_args()
    scripted = torch.jit.script(twin)
    for a, b in zip(twin(*args), scripted(*args)):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)
    s_emb = twin.embed_static(args[5], args[6])
    z, _ = twin.encode(*args[:4], s_emb)
    torch.testing.assert_close(scripted.risk_logit(z, s_emb), twin.risk_logit(z, s_emb))


@pytest.mark.parametrize("name", ["ode_rnn", "hybrid"])
def test_exported_predictor_forecasts_with_the_ode_rnn(name):
    """The export path (TwinPredictor.forecast) keeps working with the anchor convention."""
    torch.manual_seed(0)
    twin = PatientTwin(4, 3, 1, latent_dim=6, hidden=16, encoder_hidden=16, **VARIANTS[name]).eval()
    norm = {"meas_mean": [80.0, 75.0, 0.8, 37.0], "meas_std": [10.0, 10.0, 0.4, 0.5], "static_mean": [60.0, 80.0, 0.5],
            "static_std": [15.0, 15.0, 0.5], "dose_scale": [8.0]}
    predictor = build_predictor(twin, norm, feature_spec())
    scripted = torch.jit.script(predictor)
    times = torch.tensor([0.0, 1.0, 2.5, 4.0])
    values = torch.tensor([[80.0, 75.0, 1.5, 37.0]] * 4)
    query = torch.tensor([1.0, 6.0, 12.0])
    args = (times, values, torch.ones(4, 4), torch.tensor([60.0, 80.0, 1.0]), torch.tensor([[5.0, 0.0, 8.0, 0.0]]), query)
    mean, std = scripted.forecast(*args)
    assert mean.shape == (3, 4) and bool((std > 0).all())
    torch.testing.assert_close(mean, predictor.forecast(*args)[0])


def test_unknown_encoder_is_a_config_error():
    with pytest.raises(ConfigError, match="model.twin.encoder"):
        PatientTwin(4, 3, 1, encoder="transformer")


def _objective(twin, args, sample):
    """The ELBO terms as TwinLitModule computes them (posterior sample only when variational)."""
    from twinode.training.losses import kl_standard_normal

    t, x, m, length, anchor, s, sk, doses, tq = args
    s_emb = twin.embed_static(s, sk)
    mean, log_std = twin.encode(t, x, m, length, s_emb)
    z = mean + torch.exp(log_std) * torch.randn_like(mean) if (sample and twin.variational) else mean
    out, _ = twin.decode_at(z, anchor, tq, doses, s_emb)
    return out, kl_standard_normal(mean, log_std) if twin.variational else torch.zeros(())


def test_deterministic_twin_ignores_sampling_and_variational_samples():
    args = twin_args()
    torch.manual_seed(0)
    det = PatientTwin(4, 3, 1, latent_dim=6, hidden=16, encoder_hidden=16, variational=False)
    a, kl = _objective(det, args, sample=True)
    b, _ = _objective(det, args, sample=True)
    torch.testing.assert_close(a, b)
    assert float(kl) == 0.0
    torch.manual_seed(0)
    var = PatientTwin(4, 3, 1, latent_dim=6, hidden=16, encoder_hidden=16, variational=True)
    c, kl = _objective(var, args, sample=True)
    d, _ = _objective(var, args, sample=True)
    assert not torch.allclose(c, d) and bool((kl > 0).all())


def test_risk_head_learns_a_separable_outcome():
    """Outcome = whether channel 0 was high in the history: the head must reach AUROC > 0.95."""
    from torchmetrics.functional.classification import binary_auroc

    torch.manual_seed(0)
    t, x, m, length, s = toy_history(B=64, N=4, D=2, S=1, seed=3)
    m = torch.ones_like(m)
    level = torch.randn(64)
    x = x * 0.3 + level.view(-1, 1, 1)
    y = (level > 0).float()
    twin = PatientTwin(2, 1, 0, latent_dim=4, hidden=16, encoder_hidden=16, risk_head=True)
    opt = torch.optim.Adam(twin.parameters(), lr=2e-2)
    for _ in range(40):
        s_emb = twin.embed_static(s, torch.ones_like(s))
        z, _ = twin.encode(t, x, m, length, s_emb)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(twin.risk_logit(z, s_emb), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t2, x2, _, length2, s2 = toy_history(B=128, N=4, D=2, S=1, seed=4)
    level2 = torch.randn(128)
    x2 = x2 * 0.3 + level2.view(-1, 1, 1)
    with torch.no_grad():
        s_emb = twin.embed_static(s2, torch.ones_like(s2))
        z, _ = twin.encode(t2, x2, torch.ones_like(x2), length2, s_emb)
        auroc = binary_auroc(torch.sigmoid(twin.risk_logit(z, s_emb)), (level2 > 0).long())
    assert auroc > 0.95, float(auroc)


def test_twin_without_risk_head_says_how_to_enable_it():
    twin = PatientTwin(2, 1, 0, latent_dim=4, hidden=8, encoder_hidden=8)
    with pytest.raises(RuntimeError, match="risk_head=true"):
        twin.risk_logit(torch.zeros(1, 4), torch.zeros(1, 8))

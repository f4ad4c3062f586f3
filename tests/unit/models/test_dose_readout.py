"""model.twin.dose_readout: each dose moves every channel's level directly, through its own
two-compartment chain and a learned gain; off, the twin is what it was."""

import math

import pytest
import torch

from tests.unit.models._toy import toy_history
from twinode.models import PatientTwin
from twinode.models.dynamics import bateman


def _twin(dose_readout=True, n_interventions=2, **kw):
    torch.manual_seed(0)
    return PatientTwin(3, 2, n_interventions, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored",
                       encoder_doses=True, dose_readout=dose_readout, **kw).eval()


def _decode(twin, doses, tq):
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    z, _ = twin.encode(t, x, m, length, s_emb, doses)
    anchor = torch.gather(t, 1, (length - 1).unsqueeze(1)).squeeze(1)
    return twin.decode_at(z, anchor, tq, doses, s_emb, t, x, m, length), t, length


def test_off_or_without_dose_channels_the_twin_is_unchanged_and_draws_nothing_extra():
    plain, with_readout = _twin(dose_readout=False), _twin()
    assert not plain.has_dose_readout and with_readout.has_dose_readout
    assert not any(k.startswith("dose_readout.") for k in plain.state_dict())
    # Every other weight starts where it would without the readout (no random draws in it).
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(with_readout.state_dict()[name], value)
    assert not _twin(n_interventions=0).has_dose_readout
    assert not PatientTwin(3, 2, 2, latent_dim=4, hidden=8, dose_readout=True).has_dose_readout  # latent decoder


def test_zero_gains_decode_as_the_twin_without_the_readout():
    plain, with_readout = _twin(dose_readout=False), _twin()
    doses = torch.tensor([[[1.0, 0.0, 2.0, 0.0], [30.0, 1.0, 1.0, 0.0]]]).expand(4, -1, -1).contiguous()
    tq = torch.linspace(0.5, 40.0, 7).unsqueeze(0).expand(4, -1).contiguous()
    (a, sa), _, _ = _decode(plain, doses, tq)
    (b, sb), _, _ = _decode(with_readout, doses, tq)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(sa, sb)


def test_a_dose_after_the_history_shifts_the_forecast_by_gain_times_its_chain():
    twin = _twin()
    ka, ke = 1.5, math.log(2.0) / 2.0
    with torch.no_grad():
        twin.dose_readout.kinetics.log_ka.fill_(math.log(ka))
        twin.dose_readout.kinetics.log_k.fill_(math.log(ke))
        twin.dose_readout.gain.copy_(torch.tensor([[0.0, 0.7], [3.0, 0.0], [-1.0, 0.5]]))
    t, _, _, length, _ = toy_history()
    t_dose = float(t.max()) + 1.0
    tq = (t_dose + torch.tensor([0.0, 0.5, 1.0, 2.0, 6.0])).unsqueeze(0).expand(4, -1).contiguous()
    none = torch.zeros(4, 1, 4)
    dose = torch.tensor([[[t_dose, 0.0, 2.0, 0.0]]]).expand(4, -1, -1).contiguous()
    (base, _), _, _ = _decode(twin, none, tq)
    with torch.no_grad():  # take the latent path's share out: the field's own dose inputs
        twin.solver.field.control.weight.zero_()
        twin.solver.field.first.weight[:, 4:6].zero_()
    (no_field, _), _, _ = _decode(twin, dose, tq)
    (no_field_none, _), _, _ = _decode(twin, none, tq)
    expected = 2.0 * ka * bateman(torch.tensor(ka), torch.tensor(ke), tq - t_dose)  # [4, Q]
    diff = no_field - no_field_none
    torch.testing.assert_close(diff[..., 0], torch.zeros_like(expected))
    torch.testing.assert_close(diff[..., 1], 3.0 * expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(diff[..., 2], -1.0 * expected, rtol=1e-5, atol=1e-6)
    assert diff[:, 0].abs().max() < 1e-6  # nothing at the dose's own time
    assert torch.isfinite(base).all()


def test_scripted_twin_decodes_the_readout_and_its_gradients_in_dose_times_and_amounts_are_finite():
    twin = _twin()
    with torch.no_grad():
        twin.dose_readout.gain.fill_(0.5)
    scripted = torch.jit.script(twin)
    t, x, m, length, s = toy_history()
    s_emb = twin.embed_static(s, torch.ones_like(s))
    dose = torch.tensor([[[float(t.max()) + 0.5, 0.0, 1.5, 0.0], [float(t.max()) + 0.5, 1.0, 1.0, 2.0]]])
    dose = dose.expand(4, -1, -1).clone().requires_grad_(True)
    z, _ = twin.encode(t, x, m, length, s_emb, dose.detach())
    anchor = torch.gather(t, 1, (length - 1).unsqueeze(1)).squeeze(1)
    tq = (float(t.max()) + torch.tensor([1.0, 3.0])).unsqueeze(0).expand(4, -1).contiguous()
    mean, _ = scripted.decode_at(z, anchor, tq, dose, s_emb, t, x, m, length)
    eager, _ = twin.decode_at(z, anchor, tq, dose, s_emb, t, x, m, length)
    torch.testing.assert_close(mean, eager)
    (grad,) = torch.autograd.grad(mean.sum(), dose)
    assert torch.isfinite(grad).all()
    assert grad[..., 0].abs().sum() > 0 and grad[..., 2].abs().sum() > 0


def test_a_saturating_readout_lifts_less_on_top_of_drug_already_present_and_scripts():
    from twinode.models.dose_readout import DoseReadout

    linear, saturating = DoseReadout(2, 1), DoseReadout(2, 1, saturation=0.5)
    with torch.no_grad():
        for r in (linear, saturating):
            r.gain.fill_(1.0)
    tq = torch.tensor([[4.0]])
    one = torch.tensor([[[1.0, 0.0, 3.0, 0.0]]])
    two = torch.tensor([[[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 3.0, 0.0]]])
    first = saturating(tq, one)
    second = saturating(tq, two) - saturating(tq, two[:, :1])
    # The second dose, given while the first's drug is still there, adds less than it alone.
    assert float(second[0, 0, 0]) < 0.9 * float(first[0, 0, 0])
    lin_second = linear(tq, two) - linear(tq, two[:, :1])
    torch.testing.assert_close(lin_second, linear(tq, one), rtol=1e-5, atol=1e-6)
    u = linear.kinetics(tq, one)
    torch.testing.assert_close(first, (u / (1 + 0.5 * u)).expand(-1, -1, 2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.jit.script(saturating)(tq, two), saturating(tq, two))


def test_a_linear_readout_saved_before_the_saturation_option_loads():
    from twinode.models.dose_readout import DoseReadout

    old = {k: v for k, v in DoseReadout(2, 1).state_dict().items() if k != "log_saturation"}
    fresh = DoseReadout(2, 1)
    fresh.load_state_dict(old)
    assert not fresh.saturating
    with pytest.raises(ValueError, match="saturation must be > 0"):
        DoseReadout(2, 1, saturation=0.0)

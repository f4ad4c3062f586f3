"""model.twin.level_trend_h: each channel's level follows a course over the time since the
record's start, shared by every subject; off, or at zero weights, the twin is what it was."""

import pytest
import torch

from tests.unit.models._toy import toy_history
from tests.unit.models.test_dose_readout import _decode, _twin
from twinode.models import PatientTwin


def test_level_trend_shifts_the_level_by_its_course_and_is_held_by_the_prior_penalty():
    plain = _twin(dose_readout=False)
    torch.manual_seed(0)
    trended = PatientTwin(3, 2, 2, latent_dim=4, hidden=8, encoder_hidden=8, decoder="anchored", encoder_doses=True,
                          level_trend_h=[2.0, 8.0]).eval()
    for name, value in plain.state_dict().items():  # no random draws, nothing else moved
        torch.testing.assert_close(trended.state_dict()[name], value)
    none = torch.zeros(4, 1, 4)
    tq = torch.tensor([0.0, 1.0, 3.0, 50.0]).unsqueeze(0).expand(4, -1).contiguous()
    (a, _), _, _ = _decode(trended, none, tq)
    (b, _), _, _ = _decode(plain, none, tq)
    torch.testing.assert_close(a, b)  # zero weights: the twin without the trend
    with torch.no_grad():
        trended.decoder.trend.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    shift = trended.decoder.level_trend(tq)
    expected = torch.stack([torch.exp(-tq / 2.0), 2.0 * torch.exp(-tq / 8.0), torch.zeros_like(tq)], dim=-1)
    torch.testing.assert_close(shift, expected)
    assert trended.decoder.prior_penalty() >= 5.0 - 1e-4  # 1 + 4 from the trend's weights
    scripted = torch.jit.script(trended)
    t, x, m, length, s = toy_history()
    s_emb = trended.embed_static(s, torch.ones_like(s))
    z, _ = trended.encode(t, x, m, length, s_emb, none)
    anchor = torch.gather(t, 1, (length - 1).unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(scripted.decode_at(z, anchor, tq, none, s_emb, t, x, m, length)[0],
                               trended.decode_at(z, anchor, tq, none, s_emb, t, x, m, length)[0])
    with pytest.raises(ValueError, match="time constants"):
        PatientTwin(3, 2, 0, decoder="anchored", level_trend_h=[0.0])

"""DoseEffect's closed form against the effect compartment dc/dt = -k c + rate(t), integrated."""

import math

import torch
from torch import Tensor, nn

from twinode.models.dynamics import DoseEffect
from twinode.solvers import Dopri5Solver


class Compartment(nn.Module):
    """Per channel: dc/dt = -k c + sum of infusion rates running at t (boluses enter as jumps)."""

    def __init__(self, k: Tensor, doses: Tensor):
        super().__init__()
        self.k, self.rows = k, doses

    def forward(self, t: Tensor, c: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        t_k, ch, amount, dur = self.rows[..., 0], self.rows[..., 1].long(), self.rows[..., 2], self.rows[..., 3]
        on = (dur > 0) & (t.unsqueeze(1) >= t_k) & (t.unsqueeze(1) < t_k + dur)
        rate = torch.where(on, amount / dur.clamp(min=1e-9), torch.zeros_like(amount))
        inflow = (rate.unsqueeze(-1) * nn.functional.one_hot(ch, c.shape[1]).to(c.dtype)).sum(1)
        return -self.k * c + inflow


def _integrate(k: Tensor, doses: Tensor, times: list) -> Tensor:
    """March the compartment through dose events and query times (single subject); a bolus
    adds its amount at its time, infusions switch the rate on and off between pieces."""
    C = k.shape[0]
    solver = Dopri5Solver(Compartment(k, doses), rtol=1e-10, atol=1e-12)
    rows = doses[0].tolist()
    boluses = [(t, int(ch), a) for t, ch, a, d in rows if d == 0 and a != 0]
    edges = {t for t, _, _, d in rows if d > 0} | {t + d for t, _, _, d in rows if d > 0}
    c, t, out = torch.zeros(1, C, dtype=torch.float64), 0.0, []
    for stop in sorted(edges | {b[0] for b in boluses} | set(times)):
        if stop > t:  # a smooth piece: no event strictly inside
            c = solver(c, torch.tensor([t], dtype=torch.float64), torch.tensor([[stop]], dtype=torch.float64), doses,
                       torch.zeros(1, 0, dtype=torch.float64))[:, 0]
            t = stop
        for tb, ch, a in boluses:
            if tb == stop:
                c = c + a * nn.functional.one_hot(torch.tensor([ch]), C).to(c.dtype)
        if stop in times:
            out.append(c[0])
    return torch.stack(out)


def test_closed_form_matches_integrated_compartment_for_bolus_and_infusion():
    half_life = [2.0, 5.0]
    effect = DoseEffect(2, half_life).double()
    k = torch.tensor([math.log(2.0) / h for h in half_life], dtype=torch.float64)
    # (time, channel, amount, duration): two boluses on channel 0, one infusion on channel 1, one padding row.
    doses = torch.tensor([[[1.0, 0.0, 3.0, 0.0], [4.0, 0.0, 1.5, 0.0], [2.0, 1.0, 6.0, 3.0], [0.0, 0.0, 0.0, 0.0]]],
                         dtype=torch.float64)
    times = [0.5, 1.5, 3.0, 4.5, 5.0, 9.0, 20.0]
    numeric = _integrate(k, doses, times)
    closed = torch.stack([effect(torch.tensor([t], dtype=torch.float64), doses)[0] for t in times])
    assert numeric[2:-1].min() > 0.1  # both channels carry an effect after their doses
    assert torch.allclose(closed, numeric, rtol=0, atol=1e-7), (closed - numeric).abs().max()
    # Before any dose there is no effect.
    assert closed[0].abs().max() == 0 and numeric[0].abs().max() == 0

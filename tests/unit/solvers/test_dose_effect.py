"""DoseEffect's closed form (depot -> effect compartment, Bateman kinetics) against the
compartment ODEs integrated numerically, its limits, and finite gradients in the scripted twin."""

import functools
import math

import pytest
import torch
from torch import Tensor, nn

from twinode.models.dynamics import DoseEffect, MLPField, absorption_rate, bateman, set_dose_peaks
from twinode.solvers import Dopri5Solver


class Chain(nn.Module):
    """Per channel, state (depot g, effect c): dg/dt = -ka g + infusion rates running at t,
    dc/dt = ka g - ke c (boluses enter the depot as jumps)."""

    def __init__(self, ka: Tensor, ke: Tensor, doses: Tensor):
        super().__init__()
        self.ka, self.ke, self.rows = ka, ke, doses

    def forward(self, t: Tensor, y: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        C = self.ka.shape[0]
        g, c = y[:, :C], y[:, C:]
        t_k, ch, amount, dur = self.rows[..., 0], self.rows[..., 1].long(), self.rows[..., 2], self.rows[..., 3]
        on = (dur > 0) & (t.unsqueeze(1) >= t_k) & (t.unsqueeze(1) < t_k + dur)
        rate = torch.where(on, amount / dur.clamp(min=1e-9), torch.zeros_like(amount))
        inflow = (rate.unsqueeze(-1) * nn.functional.one_hot(ch, C).to(y.dtype)).sum(1)
        return torch.cat([-self.ka * g + inflow, self.ka * g - self.ke * c], dim=1)


def _integrate(ka: Tensor, ke: Tensor, doses: Tensor, times: list) -> Tensor:
    """March the chain through dose events and query times (single subject): a bolus adds its
    amount to the depot at its time, infusions switch their rate on and off between pieces.
    Returns the effect compartment ``[len(times), C]``."""
    C = ka.shape[0]
    solver = Dopri5Solver(Chain(ka, ke, doses), rtol=1e-11, atol=1e-13)
    rows = doses[0].tolist()
    boluses = [(t, int(ch), a) for t, ch, a, d in rows if d == 0 and a != 0]
    edges = {t for t, _, _, d in rows if d > 0} | {t + d for t, _, _, d in rows if d > 0}
    y, t, out = torch.zeros(1, 2 * C, dtype=torch.float64), 0.0, []
    for stop in sorted(edges | {b[0] for b in boluses} | set(times)):
        if stop > t:  # a smooth piece: no event strictly inside
            y = solver(y, torch.tensor([t], dtype=torch.float64), torch.tensor([[stop]], dtype=torch.float64), doses,
                       torch.zeros(1, 0, dtype=torch.float64))[:, 0]
            t = stop
        for tb, ch, a in boluses:
            if tb == stop:
                y = y + a * nn.functional.one_hot(torch.tensor([ch]), 2 * C).to(y.dtype)
        if stop in times:
            out.append(y[0, C:])
    return torch.stack(out)


# (time, channel, amount, duration): two boluses on channel 0, an infusion and a bolus on
# channel 1, one infusion on channel 2, one padding row.
DOSES = torch.tensor([[[1.0, 0.0, 3.0, 0.0], [4.0, 0.0, 1.5, 0.0], [2.0, 1.0, 6.0, 3.0], [3.0, 1.0, 2.0, 0.0],
                       [0.5, 2.0, 4.0, 1.5], [0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
TIMES = [0.25, 0.75, 1.5, 3.0, 4.5, 5.0, 9.0, 20.0]


@pytest.mark.parametrize("peaks", [[0.5, 1.25, 3.0], [1.0 / (math.log(2.0) / 2.0), 0.2, 6.0]],
                         ids=["absorption_faster_and_slower", "equal_rates"])
def test_closed_form_matches_the_integrated_chain_for_boluses_and_infusions(peaks):
    half_life = [2.0, 5.0, 1.0]
    effect = DoseEffect(3, half_life, peak_h=peaks).double()
    ka, ke = (r.detach().double() for r in effect.rates())
    numeric = _integrate(ka, ke, DOSES, TIMES)
    closed = torch.stack([effect(torch.tensor([t], dtype=torch.float64), DOSES)[0] for t in TIMES])
    assert numeric[3:-1].min() > 0.02  # every channel carries an effect after its doses
    assert torch.allclose(closed, numeric, rtol=0, atol=1e-8), (closed - numeric).abs().max()
    assert closed[0, :2].abs().max() == 0 and numeric[0, :2].abs().max() == 0  # nothing before a dose


def test_equal_rates_use_the_limit_and_float32_stays_close():
    """ka = ke: the Bateman quotient is 0/0; its limit is s exp(-k s). Near-equal rates in
    float32 agree with float64 to float32 precision."""
    s = torch.tensor([0.0, 0.1, 1.0, 3.0, 50.0], dtype=torch.float64)
    k = torch.tensor(0.7, dtype=torch.float64)
    torch.testing.assert_close(bateman(k, k, s), s * torch.exp(-k * s), rtol=1e-14, atol=0)
    for dk in (1e-7, 1e-4, 1e-2):
        ka = k + dk
        exact = (torch.exp(-k * s) - torch.exp(-ka * s)) / (ka - k)
        f32 = bateman(ka.float(), k.float(), s.float()).double()
        torch.testing.assert_close(f32, torch.where(s > 0, exact, torch.zeros_like(s)), rtol=1e-5, atol=1e-6)


def test_peak_time_half_life_and_area_of_a_bolus():
    effect = DoseEffect(2, [1.5, 2.0], peak_h=[1.25, None]).double().requires_grad_(False)
    assert effect.peak_h().tolist() == pytest.approx([1.25, 2.0], rel=1e-5)  # None: the half-life (ka = 2 ke)
    ka, ke = effect.rates()
    assert float(ka[1] / ke[1]) == pytest.approx(2.0, rel=1e-5)
    t = torch.linspace(0.0, 80.0, 160001, dtype=torch.float64)
    doses = torch.tensor([[[0.0, 0.0, 2.0, 0.0]]], dtype=torch.float64)
    u = effect(t.unsqueeze(0), doses)[0, :, 0]
    assert float(t[u.argmax()]) == pytest.approx(1.25, abs=1e-3)
    _, ke = effect.rates()
    area = torch.trapezoid(u, t)
    assert float(area) == pytest.approx(2.0 / float(ke[0]), rel=1e-6)  # exposure a / ke, as first order had
    # A steady infusion of rate r settles at r / ke.
    inf = torch.tensor([[[0.0, 1.0, 30.0, 30.0]]], dtype=torch.float64)
    assert float(effect(torch.tensor([29.9], dtype=torch.float64), inf)[0, 1]) == pytest.approx(1.0 / float(ke[1]), rel=1e-4)


def test_absorption_rate_inverts_the_peak_time():
    for hl, peak in [(1.5, 1.25), (1.0, 0.75), (2.0, 4.0), (0.5, 0.01)]:
        ka, ke = absorption_rate(hl, peak), math.log(2.0) / hl
        assert math.log(ka / ke) / (ka - ke) == pytest.approx(peak, rel=1e-9)
    with pytest.raises(ValueError, match="must be > 0"):
        absorption_rate(1.0, 0.0)


def test_set_dose_peaks_restarts_absorption_only():
    field = MLPField(4, 2, 1, hidden=8, half_life_h=[1.0, 3.0]).requires_grad_(False)
    ke_before = field.dose_effect.rates()[1].clone()
    assert set_dose_peaks(field, [0.75, None]) == 1
    peaks = field.dose_effect.peak_h()
    assert float(peaks[0]) == pytest.approx(0.75, rel=1e-5) and float(peaks[1]) == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(field.dose_effect.rates()[1], ke_before)


def test_a_first_order_checkpoint_loads_as_first_order():
    effect = DoseEffect(1, [2.0])
    effect.load_state_dict({"log_k": torch.tensor([math.log(math.log(2.0) / 2.0)])})
    t = torch.tensor([[0.5, 1.0, 4.0]])
    u = effect(t, torch.tensor([[[0.0, 0.0, 3.0, 0.0]]]))[0, :, 0]
    torch.testing.assert_close(u, 3.0 * torch.exp(-math.log(2.0) / 2.0 * t[0]), rtol=2e-3, atol=0)


def test_gradients_wrt_dose_times_and_amounts_are_finite_and_right():
    effect = DoseEffect(3, [2.0, 5.0, 1.0], peak_h=[0.5, 1.0 / (math.log(2.0) / 5.0), 3.0]).double()
    doses = DOSES.clone().requires_grad_(True)
    # Query times on and around dose times, where the clamps and switches sit.
    t = torch.tensor([[0.5, 1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 7.0]], dtype=torch.float64)
    u = effect(t, doses)
    g, = torch.autograd.grad(u.sum(), doses)
    assert bool(torch.isfinite(g).all())
    assert g[0, :5, 2].abs().min() > 0 and g[0, :5, 0].abs().min() > 0  # amounts and times move the effect
    # Against central differences (at query times off the dose times, where it is smooth).
    t2 = t + 0.01
    fn = lambda d: effect(t2, d).sum()
    d = DOSES.clone().requires_grad_(True)
    g2, = torch.autograd.grad(fn(d), d)
    for idx in [(0, 0, 0), (0, 0, 2), (0, 2, 0), (0, 2, 2), (0, 2, 3), (0, 3, 0), (0, 4, 3)]:
        e = torch.zeros_like(DOSES)
        e[idx] = 1e-6
        fd = (fn(DOSES + e) - fn(DOSES - e)) / 2e-6
        assert float(g2[idx]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8), idx


class Head(nn.Module):
    """A solver and its field, scripted as the exported twin scripts them."""

    def __init__(self, solver: nn.Module):
        super().__init__()
        self.solver = solver

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.solver(z0, t0, tq, doses, s)


def test_scripted_solve_gives_finite_gradients_wrt_dose_times_and_amounts():
    """The latent solution of a scripted fixed-grid RK4 twin field: gradients with respect to
    dose times and amounts (boluses and an infusion, a dose exactly on a grid node, equal
    rates on one channel) are finite, non-zero and equal to the eager ones."""
    from twinode.solvers import FixedGridSolver

    torch.manual_seed(0)
    field = MLPField(6, 3, 2, hidden=16, half_life_h=[1.0, 1.5, 2.0], peak_h=[0.75, 1.25, 1.0 / (math.log(2.0) / 2.0)])
    nn.init.normal_(field.out.weight, std=0.3)
    eager = Head(FixedGridSolver(field, "rk4", 0.5))
    scripted = torch.jit.script(eager)
    z0, t0, s = torch.randn(2, 6), torch.tensor([3.0, 2.0]), torch.randn(2, 2)
    tq = t0.unsqueeze(1) + torch.arange(1, 13) / 2.0
    base = torch.tensor([[[3.5, 0.0, 1.2, 0.0], [3.0, 1.0, 0.8, 0.0], [0.0, 2.0, 1.0, 24.0]],
                         [[2.25, 1.0, 0.5, 0.0], [4.0, 0.0, 1.0, 0.0], [1.0, 2.0, 2.0, 3.0]]])
    grads = []
    for model in (eager, scripted, scripted):  # the scripted module's second call runs its optimised graph
        doses = base.clone().requires_grad_(True)
        g, = torch.autograd.grad(model(z0, t0, tq, doses, s).square().sum(), doses)
        assert bool(torch.isfinite(g).all()), g
        assert g[:, :, 0].abs().min() > 0 and g[:, :, 2].abs().min() > 0  # every dose's time and amount matter
        grads.append(g)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[2], grads[0], rtol=1e-4, atol=1e-6)


def test_time_scales_add_the_same_chain_slowed_with_the_same_area():
    """Each extra time scale m is the integrated chain with both rates / m, divided by m: a
    bolus and an infusion keep their area, the first block is the chain itself, and a
    scripted field takes the wider input."""
    doses = torch.tensor([[[0.5, 0.0, 2.0, 0.0], [1.0, 1.0, 3.0, 2.5], [0.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    plain = DoseEffect(2, [1.5, 2.0], peak_h=[1.0, None]).double()
    scaled = DoseEffect(2, [1.5, 2.0], peak_h=[1.0, None], time_scales=[1.0, 3.0]).double()
    assert scaled.n_outputs == 4
    times = [0.25, 1.0, 2.0, 3.5, 6.0, 9.0]
    t = torch.tensor([times], dtype=torch.float64)
    u = scaled(t, doses).detach()
    torch.testing.assert_close(u[..., :2], plain(t, doses).detach())
    ka, ke = (r.detach().double() for r in plain.rates())
    slow = _integrate(ka / 3.0, ke / 3.0, doses, times) / 3.0
    torch.testing.assert_close(u[0, :, 2:], slow, rtol=1e-7, atol=1e-9)
    grid = torch.linspace(0.0, 120.0, 24001, dtype=torch.float64).unsqueeze(0)
    area = scaled(grid, doses).detach().sum(1)[0] * (120.0 / 24000)
    torch.testing.assert_close(area[2:], area[:2], rtol=2e-3, atol=0.0)
    field = torch.jit.script(MLPField(3, 2, 2, 8, 1, [1.5, 2.0], dose_time_scales=[1.0, 3.0]))
    assert field.first.in_features == 3 + 4 + 2
    out = field(torch.tensor([2.0]), torch.zeros(1, 3), doses.float(), torch.zeros(1, 2))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="time scales"):
        DoseEffect(1, [1.0], time_scales=[1.0, 0.0])

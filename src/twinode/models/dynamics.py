"""Latent vector fields with interventions as inputs.

Interventions act through a chain of two compartments per channel, solved in closed form
(Bateman kinetics): a dose enters a depot, moves on to an effect compartment at the
absorption rate ``ka`` and leaves it at the elimination rate ``ke``. A bolus of amount ``a``
at ``t_k`` gives the effect ``a * ka * (exp(-ke s) - exp(-ka s)) / (ka - ke)``, ``s = t - t_k``,
which is 0 at the dose, peaks at ``log(ka/ke) / (ka - ke)`` and has the area ``a / ke``; an
infusion of ``a`` over ``d`` hours contributes the exact response to its rate ``a/d``. Both
rates per channel are learned, starting from the FeatureSpec's ``effect_half_life_h`` (``ke``)
and ``effect_peak_h`` (time from a bolus to its peak effect, which fixes ``ka``). Closed form
means the effect is exact at any time, for any solver, without extra states.

``time_scales`` gives the field each channel's response at several time scales: the chain
above, and the same chain slowed ``m``-fold (both rates divided by ``m``, the response divided
by ``m``, so every scale has the same area per dose and the same steady level under an
infusion). A drug whose action outlasts its plasma kinetics (insulin lowering glucose
production hours after the plasma peak) then has a slow input to act through, instead of a
delay the latent dynamics would have to learn from the rare long plan changes in the data.
"""


import math

from typing import Final, List, Optional

import torch
from torch import Tensor, nn

# Rates are used within [exp(-9), exp(9)] per hour (a mean residence of 2 s to 1 year).
_LOG_RATE_MIN, _LOG_RATE_MAX = -9.0, 9.0
# A checkpoint written before the absorption compartment existed loads with this absorption
# rate: the depot empties within seconds, which is the first-order compartment it was
# trained with (to 1e-3 relative after the first minute).
LEGACY_ABSORPTION_PER_H = 1.0e4


def _phi(x: Tensor) -> Tensor:
    """``(1 - exp(-x)) / x`` for ``x >= 0`` (1 at 0), with finite values and gradients
    everywhere: a Taylor series near 0, where the quotient's gradient would cancel."""
    small = x < 1e-2
    xs = torch.where(small, torch.ones_like(x), x)
    series = 1.0 - x * (0.5 - x * (1.0 / 6.0 - x / 24.0))
    return torch.where(small, series, -torch.expm1(-xs) / xs)


def bateman(ka: Tensor, ke: Tensor, s: Tensor) -> Tensor:
    """``(exp(-ke s) - exp(-ka s)) / (ka - ke)`` for ``s >= 0``; symmetric in the two rates,
    computed as ``exp(-min(ka, ke) s) * s * phi(|ka - ke| s)`` so it neither overflows nor
    divides by zero when the rates coincide (its limit there is ``s exp(-k s)``)."""
    return torch.exp(-torch.minimum(ka, ke) * s) * s * _phi((ka - ke).abs() * s)


def absorption_rate(half_life_h: float, peak_h: float) -> float:
    """The absorption rate ``ka`` (1/h) whose bolus response, with elimination half-life
    ``half_life_h``, peaks ``peak_h`` hours after the dose: solves
    ``log(ka/ke) / (ka - ke) = peak_h`` (unique; ``ka = ke`` when ``peak_h = 1/ke``)."""
    if not (half_life_h > 0 and peak_h > 0):
        raise ValueError(f"effect half-life and peak time must be > 0 hours, got {half_life_h} and {peak_h}")
    ke = math.log(2.0) / half_life_h
    y = ke * peak_h  # g(r) = log(r) / (r - 1) = y with r = ka / ke; g falls from inf to 0
    lo, hi = -40.0, 40.0  # log r
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        g = 1.0 if abs(mid) < 1e-12 else mid / math.expm1(mid)
        if g > y:
            lo = mid
        else:
            hi = mid
    return ke * math.exp(0.5 * (lo + hi))


def default_peak_h(half_life_h: float) -> float:
    """The peak time used when a FeatureSpec gives none: the half-life itself, which is the
    chain whose absorption is twice as fast as its elimination (``ka = 2 ke``)."""
    return half_life_h


class DoseEffect(nn.Module):
    """u(t) from dose rows ``[B, M, 4] = (time_h, channel, amount, duration_h)``: ``[B, C]`` at
    times ``t [B]``, or ``[B, K, C]`` at ``t [B, K]`` (every stage time of a grid at once).

    ``log_k`` (elimination) and ``log_ka`` (absorption) are per-channel parameters;
    ``half_life_h`` and ``peak_h`` give their starting values (defaults: 2 h, and the
    half-life, i.e. ``ka = 2 ke``). The effect is continuous in time, amounts and dose times, with finite
    gradients with respect to all of them, including when the two rates coincide.

    ``time_scales`` (default ``[1.0]``): the output holds ``n_channels`` columns per scale
    ``m``, in the order given, each the channel's response with both rates divided by ``m``
    and the response divided by ``m`` (same area per dose); ``n_outputs`` columns in all."""

    n_channels: Final[int]
    n_outputs: Final[int]
    scaled: Final[bool]

    def __init__(self, n_channels: int, half_life_h: Optional[List[float]] = None, learn: bool = True,
                 peak_h: Optional[List[Optional[float]]] = None, time_scales: Optional[List[float]] = None):
        super().__init__()
        self.n_channels = n_channels
        scales = [float(m) for m in time_scales] if time_scales else [1.0]
        if any(not m > 0 for m in scales):
            raise ValueError(f"dose time scales must be > 0, got {scales}")
        self.n_outputs = n_channels * len(scales)
        self.scaled = scales != [1.0]
        # 1/m per output column, channel-major within each scale block (a plain list, not a
        # buffer: the weights and their checksum stay those of the chain alone).
        self.inv_scale: List[float] = [1.0 / m for m in scales for _ in range(n_channels)]
        hl = list(half_life_h) if half_life_h else [2.0] * n_channels
        if len(hl) != n_channels:
            raise ValueError(f"half_life_h has {len(hl)} entries for {n_channels} intervention channels")
        pk = list(peak_h) if peak_h else [None] * n_channels
        if len(pk) != n_channels:
            raise ValueError(f"peak_h has {len(pk)} entries for {n_channels} intervention channels")
        hl = [max(float(h), 1e-3) for h in hl]
        ke = [math.log(2.0) / h for h in hl]
        ka = [absorption_rate(h, default_peak_h(h) if p is None else float(p)) for h, p in zip(hl, pk)]
        clamp = lambda v: min(max(math.log(v), _LOG_RATE_MIN), _LOG_RATE_MAX)
        self.log_k = nn.Parameter(torch.tensor([clamp(v) for v in ke], dtype=torch.float32), requires_grad=learn)
        self.log_ka = nn.Parameter(torch.tensor([clamp(v) for v in ka], dtype=torch.float32), requires_grad=learn)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "log_ka"
        if key not in state_dict and prefix + "log_k" in state_dict:  # a first-order checkpoint
            state_dict[key] = torch.full_like(state_dict[prefix + "log_k"], math.log(LEGACY_ABSORPTION_PER_H))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    @torch.jit.export
    def rates(self) -> tuple[Tensor, Tensor]:
        """Absorption and elimination rates ``[C]`` (1/h) as used."""
        ka = torch.exp(self.log_ka.clamp(-9.0, 9.0))  # _LOG_RATE_MIN, _LOG_RATE_MAX
        ke = torch.exp(self.log_k.clamp(-9.0, 9.0))
        return ka, ke

    @torch.jit.export
    def peak_h(self) -> Tensor:
        """Hours from a bolus to its peak effect, per channel ``[C]``."""
        ka, ke = self.rates()
        d = ka - ke
        same = d.abs() < 1e-6 * ke
        return torch.where(same, 1.0 / ke, torch.log(ka / ke) / torch.where(same, torch.ones_like(d), d))

    def forward(self, t: Tensor, doses: Tensor) -> Tensor:
        if t.dim() == 1:
            return self.at_times(t.unsqueeze(1), doses).squeeze(1)
        return self.at_times(t, doses)

    def at_times(self, t: Tensor, doses: Tensor) -> Tensor:
        if self.n_channels == 0:
            return torch.zeros(t.shape[0], t.shape[1], 0, dtype=t.dtype, device=t.device)
        ch = doses[..., 1].long().clamp(0, self.n_channels - 1)
        ka_c, ke_c = self.rates()
        if self.scaled:
            # Every dose once per time scale: output column c + C s, rates and response / m.
            n_scales = self.n_outputs // self.n_channels
            inv = torch.tensor(self.inv_scale, dtype=t.dtype, device=t.device)
            ka_c, ke_c = ka_c.to(t.dtype).repeat(n_scales) * inv, ke_c.to(t.dtype).repeat(n_scales) * inv
            shift = torch.arange(n_scales, device=ch.device).repeat_interleave(ch.shape[1]) * self.n_channels
            ch = ch.repeat(1, n_scales) + shift.unsqueeze(0)
            doses = doses.repeat(1, n_scales, 1)
            doses = torch.cat([doses[..., :2], doses[..., 2:3] * inv[ch].unsqueeze(-1), doses[..., 3:]], dim=-1)
        ka = ka_c.to(t.dtype)[ch].unsqueeze(1)  # [B, 1, M]
        ke = ke_c.to(t.dtype)[ch].unsqueeze(1)
        t_k, amount, dur = doses[..., 0].unsqueeze(1), doses[..., 2].unsqueeze(1), doses[..., 3].unsqueeze(1)
        since = (t.unsqueeze(-1) - t_k).clamp(min=0.0)  # [B, K, M]
        infusion = dur > 0
        # An infusion runs at a/d for `on` hours, then both compartments evolve freely for
        # `off` hours; a bolus is all depot at its time (on = 0).
        on = torch.minimum(since, dur)
        off = since - on
        rate = amount / torch.where(infusion, dur, torch.ones_like(dur))
        depot_inf = rate * on * _phi(ka * on)
        central_inf = rate * (on * _phi(ke * on) - bateman(ka, ke, on))
        depot = torch.where(infusion, depot_inf, amount)
        central = torch.where(infusion, central_inf, torch.zeros_like(central_inf))
        eff = central * torch.exp(-ke * off) + depot * ka * bateman(ka, ke, off)  # 0 before the dose
        onehot = torch.nn.functional.one_hot(ch, self.n_outputs).to(eff.dtype)  # [B, M, C x scales]
        return torch.bmm(eff, onehot)


def set_dose_peaks(module: nn.Module, peak_h: List[Optional[float]]) -> int:
    """Restart every :class:`DoseEffect` inside ``module`` from the peak times ``peak_h``
    (one per channel; None keeps the default), keeping its elimination rates. Returns how
    many were set. Training calls this with the FeatureSpec's ``effect_peak_h``."""
    n = 0
    for m in module.modules():
        if isinstance(m, DoseEffect) and m.n_channels == len(peak_h) and m.n_channels > 0:
            with torch.no_grad():
                hl = (math.log(2.0) / torch.exp(m.log_k)).tolist()
                for c, p in enumerate(peak_h):
                    if p is not None:
                        ka = absorption_rate(hl[c], float(p))
                        m.log_ka[c] = min(max(math.log(ka), _LOG_RATE_MIN), _LOG_RATE_MAX)
            n += 1
    return n


class MLPField(nn.Module):
    """dz/dt = MLP([z, u(t), s]) + control(u(t)) with a tanh body; small output init keeps early
    solves tame.

    Everything that does not depend on z (the dose effect u(t), the statics' share of the first
    layer, the control path, the output bias) is the field's *drive*: a solver that knows its
    stage times ahead (a fixed grid) computes the drive for all of them in one batched call,
    and each evaluation inside the time loop is then two matmul-adds and a matmul
    (:meth:`given_drive`, which takes the doses only for the common signature of fields).
    ``forward`` is the same arithmetic at one time per subject.
    """

    latent_dim: Final[int]
    hidden: Final[int]

    def __init__(self, latent_dim: int, n_interventions: int, static_dim: int, hidden: int = 64, layers: int = 2,
                 half_life_h: Optional[List[float]] = None, peak_h: Optional[List[Optional[float]]] = None,
                 dose_time_scales: Optional[List[float]] = None):
        super().__init__()
        if layers < 1:
            raise ValueError(f"MLPField needs at least one hidden layer, got layers={layers}")
        self.latent_dim, self.hidden = latent_dim, hidden
        self.dose_effect = DoseEffect(n_interventions, half_life_h, peak_h=peak_h, time_scales=dose_time_scales)
        n_inputs = self.dose_effect.n_outputs
        self.first = nn.Linear(latent_dim + n_inputs + static_dim, hidden)
        body: list[nn.Module] = [nn.Tanh()]
        for _ in range(layers - 1):
            body += [nn.Linear(hidden, hidden), nn.Tanh()]
        self.body = nn.Sequential(*body)
        self.out = nn.Linear(hidden, latent_dim)
        nn.init.normal_(self.out.weight, std=1e-2)
        nn.init.zeros_(self.out.bias)
        # A direct linear path from the dose effect: gives the dose response a gradient from
        # the first step, while the MLP learns its nonlinear part.
        self.control = nn.Linear(n_inputs, latent_dim, bias=False)

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.given_drive(t, z, self.drive(t.unsqueeze(1), doses, s).squeeze(1), doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """The z-independent inputs at times ``t [B, K]`` -> ``[B, K, hidden + latent]``."""
        return self.drive_from_effect(self.dose_effect(t, doses), s)

    def drive_from_effect(self, u: Tensor, s: Tensor) -> Tensor:
        """Drive for an already computed dose effect ``u [B, K, C]`` (shared with a hybrid prior)."""
        us = torch.cat([u, s.unsqueeze(1).expand(u.shape[0], u.shape[1], s.shape[1])], dim=-1)
        pre = torch.nn.functional.linear(us, self.first.weight[:, self.latent_dim:], self.first.bias)
        ctrl = self.control(u) + self.out.bias
        return torch.cat([pre, ctrl], dim=-1)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """dz/dt at states ``z [B, L]`` with the drive ``[B, hidden + latent]`` at their time."""
        H = self.hidden
        h = self.body(torch.addmm(drive[:, :H], z, self.first.weight[:, : self.latent_dim].t()))
        return torch.addmm(drive[:, H:], h, self.out.weight.t())


class HybridField(nn.Module):
    """dz/dt = mechanistic(t, z, u(t), s) + residual(z, u(t), s).

    ``mechanistic`` is any scriptable module with
    ``forward(t[B], z[B,L], u[B,C], s[B,E]) -> [B,L]``, where ``u`` is the dose effect of the
    residual's :class:`DoseEffect` (one effect compartment per intervention channel, so both
    terms see the same drug exposure). The neural residual learns what the prior misses.
    The drive is ``[u, residual drive]``, so a fixed grid precomputes both.
    """

    n_interventions: Final[int]
    n_effects: Final[int]

    def __init__(self, mechanistic: nn.Module, residual: MLPField):
        super().__init__()
        self.mechanistic = mechanistic
        self.residual = residual
        self.n_interventions = residual.dose_effect.n_channels
        self.n_effects = residual.dose_effect.n_outputs

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.given_drive(t, z, self.drive(t.unsqueeze(1), doses, s).squeeze(1), doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        u = self.residual.dose_effect(t, doses)
        return torch.cat([u, self.residual.drive_from_effect(u, s)], dim=-1)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        C = self.n_effects
        # The prior sees each channel's response at the first time scale (columns 0..C-1).
        return (self.mechanistic(t, z, drive[:, : self.n_interventions], s)
                + self.residual.given_drive(t, z, drive[:, C:], doses, s))


class DrivenField(nn.Module):
    """The drive interface for a field that only has ``forward(t, z, doses, s)``: no drive,
    every evaluation calls the field (a user's own field works with every solver)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, z: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.field(t, z, doses, s)

    def drive(self, t: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return torch.zeros(t.shape[0], t.shape[1], 0, dtype=t.dtype, device=t.device)

    def given_drive(self, t: Tensor, z: Tensor, drive: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return self.field(t, z, doses, s)

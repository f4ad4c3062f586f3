"""Treatment-plan ranking and bounded optimisation on the twin's sampled futures.

Objective over the next ``horizon_h`` hours on one channel (glucose by default): per sampled
trajectory, the share of time in [low, high] minus ``hypo_penalty`` times the share below
``low``; a plan's score is the mean over trajectories. The same random draws (seed) serve
every plan, so plans are compared on common futures.

``optimise_plan`` chooses dose amounts on one channel at slots ``min_spacing_h`` apart,
each in [0, max_dose] and together at most ``max_total``, by gradient ascent through the
scripted twin on a smooth version of the objective (sigmoids of width ``soft_mg_dl``); where
the twin gives no usable gradient it falls back to a coordinate search over a grid of
amounts. The result is rounded to ``increment`` and scored with the exact objective against
doing nothing, so it never scores worse on the twin than no extra dose.

The gradient runs through :class:`PlanSampler`: the twin's own ``sample`` draws, as a
differentiable function of the dose rows. It encodes the history once and back-transforms
to original units without the ``where(log1p, expm1(y), y)`` of the exported methods, whose
backward is 0 * inf = NaN on any untransformed channel above ~88 (glucose in mg/dL).
Scoring runs under ``torch.no_grad`` rather than ``torch.inference_mode``: a scripted
module that has run with gradients refuses inference tensors afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from twinode.errors import ConfigError


@dataclass(frozen=True)
class Objective:
    channel: int = 0
    low: float = 70.0
    high: float = 180.0
    hypo_penalty: float = 3.0
    horizon_h: float = 6.0
    step_h: float = 5.0 / 60.0

    def query(self, anchor_h: float) -> Tensor:
        n = max(1, int(round(self.horizon_h / self.step_h)))
        return anchor_h + self.step_h * torch.arange(1, n + 1, dtype=torch.float32)

    def per_trajectory(self, x: Tensor) -> Tensor:
        """``x [K, Q]`` -> score ``[K]``."""
        tir = ((x >= self.low) & (x <= self.high)).to(x.dtype).mean(-1)
        tbr = (x < self.low).to(x.dtype).mean(-1)
        return tir - self.hypo_penalty * tbr

    def smooth(self, x: Tensor, width: float) -> Tensor:
        tir = (torch.sigmoid((x - self.low) / width) * torch.sigmoid((self.high - x) / width)).mean(-1)
        tbr = torch.sigmoid((self.low - x) / width).mean(-1)
        return tir - self.hypo_penalty * tbr


@dataclass(frozen=True)
class SafetyBounds:
    channel: int  # the intervention channel to dose (e.g. InsulinBolus)
    max_dose: float
    min_spacing_h: float
    max_total: float | None = None
    increment: float = 0.05
    first_h: float = 0.0  # first slot, hours after the anchor
    last_h: float | None = None  # last slot (default: 2 h before the horizon's end)

    def __post_init__(self):
        if not (self.max_dose > 0 and self.min_spacing_h > 0 and self.increment > 0):
            raise ConfigError("safety bounds", (self.max_dose, self.min_spacing_h, self.increment),
                              hint="max_dose, min_spacing_h and increment must be > 0")
        if self.max_total is not None and self.max_total < 0:
            raise ConfigError("max_total", self.max_total, hint=">= 0")

    def slots(self, anchor_h: float, horizon_h: float) -> Tensor:
        last = (horizon_h - 2.0) if self.last_h is None else self.last_h
        n = int(math.floor(max(last - self.first_h, 0.0) / self.min_spacing_h + 1e-9)) + 1
        return anchor_h + self.first_h + self.min_spacing_h * torch.arange(n, dtype=torch.float32)

    def project(self, amounts: Tensor) -> Tensor:
        a = amounts.clamp(0.0, self.max_dose)
        if self.max_total is not None and float(a.sum()) > self.max_total:
            a = a * (self.max_total / float(a.sum()))
        a = torch.floor(a / self.increment + 1e-6) * self.increment  # round down: never above a bound
        return a


@dataclass
class PlanScore:
    label: str
    doses: Tensor  # [M, 4] the plan's doses
    score: float
    time_in_range: float
    time_below: float
    p_hypo: float  # share of trajectories that go below `low`
    mean: Tensor = field(repr=False)  # [Q] mean trajectory of the channel
    q05: Tensor = field(repr=False)
    q95: Tensor = field(repr=False)
    query: Tensor = field(repr=False)  # [Q] hours


def _merge(past: Tensor, plan: Tensor) -> Tensor:
    d = torch.cat([past.to(torch.float32).reshape(-1, 4), plan.to(torch.float32).reshape(-1, 4)])
    return d[torch.argsort(d[:, 0], stable=True)]


def score_plan(twin, history: tuple, past_doses: Tensor, label: str, plan: Tensor, objective: Objective,
               num_samples: int = 64, seed: int = 0) -> PlanScore:
    times, values, mask, static = history
    anchor = float(times[-1]) if len(times) else 0.0
    q = objective.query(anchor)
    with torch.no_grad():
        s = twin.sample(times, values, mask, static, _merge(past_doses, plan), q, num_samples, seed)
    x = s[:, :, objective.channel]
    lo, hi = torch.quantile(x, torch.tensor([0.05, 0.95]), dim=0)
    return PlanScore(label, plan, float(objective.per_trajectory(x).mean()),
                     float(((x >= objective.low) & (x <= objective.high)).float().mean()),
                     float((x < objective.low).float().mean()), float((x < objective.low).any(-1).float().mean()),
                     x.mean(0), lo, hi, q)


class PlanSampler:
    """``twin.sample(history, doses, query, num_samples, seed)`` as a differentiable function
    of ``doses [M, 4]`` (original units): the same latent and decoder draws (same seed, same
    order), the history encoded once. Uses the scripted twin's own normalisation and decoding
    (``_posterior`` and ``_decode``/``decode_at``); only the back-transform to original units
    and the clip to each channel's valid range are done here, the first in a form whose
    gradient is finite on every channel, the second in value only (straight-through)."""

    def __init__(self, twin, history: tuple, query: Tensor, num_samples: int, seed: int, past_doses: Tensor | None = None):
        times, values, mask, static = history
        self.twin, self.query, self.k = twin, query, num_samples
        past = past_doses.to(torch.float32).reshape(-1, 4) if past_doses is not None else torch.zeros(0, 4)
        with torch.no_grad():
            # Exports from before the encoder could read doses take the history alone.
            takes_doses = len(twin._posterior.schema.arguments) > 5 if hasattr(twin._posterior, "schema") else True
            post = twin._posterior(times, values, mask, static, past) if takes_doses else twin._posterior(
                times, values, mask, static)
            if isinstance(post, dict):
                self.post = post
                z_mean, z_log_std = post["z_mean"], post["z_log_std"]
            else:  # an export whose _posterior returns (z_mean, z_log_std, anchor, s_emb)
                z_mean, z_log_std, anchor, s_emb = post
                self.post = {"z_mean": z_mean, "z_log_std": z_log_std, "anchor": anchor, "s_emb": s_emb}
            gen = torch.Generator()
            gen.manual_seed(seed)
            eps = torch.randn([num_samples, z_mean.shape[1]], generator=gen)
            self.z = z_mean + torch.exp(z_log_std) * eps if twin.twin.variational else z_mean.expand(num_samples, -1)
            self.noise = torch.randn([num_samples, query.shape[0], int(twin.n_measurements)], generator=gen)

    def _decode(self, doses: Tensor) -> tuple[Tensor, Tensor]:
        if hasattr(self.twin, "_decode"):
            return self.twin._decode(self.post, self.z, doses, self.query)
        d = self.twin._norm_doses(doses).unsqueeze(0).expand(self.k, -1, 4)
        tq = self.query.unsqueeze(0).expand(self.k, -1)
        return self.twin.twin.decode_at(self.z, self.post["anchor"].expand(self.k), tq, d,
                                        self.post["s_emb"].expand(self.k, -1))

    def __call__(self, doses: Tensor) -> Tensor:
        """Trajectories ``[num_samples, Q, D]`` in original units."""
        mean, log_std = self._decode(doses)
        y = (mean + torch.exp(log_std) * self.noise) * self.twin.meas_std + self.twin.meas_mean
        log1p = self.twin.log1p
        x = torch.where(log1p, torch.expm1(torch.where(log1p, y.clamp(max=80.0), torch.zeros_like(y))), y)
        if hasattr(self.twin, "valid_lo"):  # sample's clip to each channel's valid range, in value only:
            # the gradient passes straight through, so a plan far out of range still has a direction.
            clipped = torch.minimum(torch.maximum(x, self.twin.valid_lo), self.twin.valid_hi)
            x = x + (clipped - x).detach()
        return x


def rank_plans(twin, history: tuple, past_doses: Tensor, candidates: list[tuple[str, Tensor]], objective: Objective,
               num_samples: int = 64, seed: int = 0) -> list[PlanScore]:
    """Every candidate scored on the same sampled futures, best first."""
    scored = [score_plan(twin, history, past_doses, lab, p, objective, num_samples, seed) for lab, p in candidates]
    return sorted(scored, key=lambda s: -s.score)


def _doses(times: Tensor, channel: int, amounts: Tensor) -> Tensor:
    n = times.shape[0]
    return torch.stack([times, torch.full((n,), float(channel)), amounts, torch.zeros(n)], dim=1)


def optimise_plan(twin, history: tuple, past_doses: Tensor, base_plan: Tensor, objective: Objective, bounds: SafetyBounds,
                  num_samples: int = 32, seed: int = 0, steps: int = 40, lr: float = 0.3,
                  soft_mg_dl: float = 10.0) -> tuple[PlanScore, str]:
    """The best dose plan found within ``bounds`` (added to ``base_plan``, e.g. an announced
    meal) and how it was found: ``gradient`` or ``search``. The twin's parameters are frozen
    while it runs and restored afterwards."""
    times, values, mask, static = history
    anchor = float(times[-1]) if len(times) else 0.0
    slots = bounds.slots(anchor, objective.horizon_h)
    q = objective.query(anchor)
    base = base_plan.reshape(-1, 4).to(torch.float32)
    frozen = [(p, p.requires_grad) for p in twin.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        sampler = PlanSampler(twin, history, q, num_samples, seed, past_doses)

        def smooth_score(amounts: Tensor) -> Tensor:
            plan = torch.cat([base, _doses(slots, bounds.channel, amounts)])
            s = sampler(_merge(past_doses, plan))
            return objective.smooth(s[:, :, objective.channel], soft_mg_dl).mean()

        method = "gradient"
        try:
            amounts = _gradient_ascent(smooth_score, len(slots), bounds, steps, lr)
        except (RuntimeError, torch.jit.Error):  # no usable gradient: NaN, or a twin that gives none
            method = "search"
            amounts = _coordinate_search(smooth_score, len(slots), bounds)
        amounts = bounds.project(amounts)
        keep = amounts > 0
        plan = torch.cat([base, _doses(slots[keep], bounds.channel, amounts[keep])])
        best = score_plan(twin, history, past_doses, "optimised", plan, objective, num_samples, seed)
        nothing = score_plan(twin, history, past_doses, "no_extra_dose", base, objective, num_samples, seed)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    return (best if best.score >= nothing.score else nothing), method


def _gradient_ascent(score_fn, n: int, bounds: SafetyBounds, steps: int, lr: float) -> Tensor:
    """Adam on ``amounts = max_dose * sigmoid(u)`` (inside [0, max_dose] by construction; a
    total above ``max_total`` is penalised and finally scaled down by ``bounds.project``).
    Returns the best amounts seen; raises RuntimeError when a gradient is not finite."""
    u = torch.full((n,), -2.0, requires_grad=True)
    opt = torch.optim.Adam([u], lr=lr)
    best, best_v = (bounds.max_dose * torch.sigmoid(u)).detach(), -math.inf  # replaced by the first finite value
    for _ in range(max(1, steps)):
        opt.zero_grad()
        amounts = bounds.max_dose * torch.sigmoid(u)
        value = score_fn(amounts)
        if bounds.max_total is not None:
            value = value - torch.relu(amounts.sum() - bounds.max_total) / max(bounds.max_total, bounds.increment)
        if not bool(torch.isfinite(value)):
            raise RuntimeError("the smooth objective is not finite")
        if float(value.detach()) > best_v:
            best, best_v = amounts.detach().clone(), float(value.detach())
        (-value).backward()
        if u.grad is None or not bool(torch.isfinite(u.grad).all()):
            raise RuntimeError("no usable gradient")
        opt.step()
    with torch.no_grad():
        amounts = bounds.max_dose * torch.sigmoid(u)
        value = score_fn(amounts)
        if bounds.max_total is not None:
            value = value - torch.relu(amounts.sum() - bounds.max_total) / max(bounds.max_total, bounds.increment)
        if float(value) > best_v:
            best = amounts.clone()
    return best


def _coordinate_search(score_fn, n: int, bounds: SafetyBounds, levels: int = 9, sweeps: int = 2) -> Tensor:
    grid = torch.linspace(0.0, bounds.max_dose, levels)
    a = torch.zeros(n)
    with torch.no_grad():
        for _ in range(sweeps):
            for i in range(n):
                best, best_v = a[i].item(), -math.inf
                for g in grid:
                    a[i] = g
                    if bounds.max_total is not None and float(a.sum()) > bounds.max_total:
                        continue
                    v = float(score_fn(a))
                    if v > best_v:
                        best, best_v = g.item(), v
                a[i] = best
    return a

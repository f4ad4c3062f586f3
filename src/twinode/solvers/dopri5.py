"""Adaptive Dormand-Prince 5(4) with per-sample step-size control and dense output.

Each subject integrates from its own anchor ``t0[b]`` with its own step size; finished rows
are masked (their step is 0 and their state is held). Time is the distance from the anchor,
``tau = sign * (t - t0) >= 0``, so one loop serves forward and backward queries alike: when a
batch has queries on both sides, both directions run as one stacked batch of 2B rows. Every
query is read off the accepted step that covers it by the 4th-order interpolant of the
Dormand-Prince pair (the midpoint weights of Shampine, as torchdiffeq uses).
"""

from typing import Final, List, Optional, Tuple

import torch
from torch import Tensor, nn

from twinode.solvers.adaptive import initial_step, next_step, quartic, rms_ratio, trial_step
from twinode.solvers.status import Status, raise_if_failed


class Dopri5Solver(nn.Module):
    """Solve ``dz/dt = field(t, z, doses, s)`` from ``(t0, z0)`` to every query time ``tq``.

    ``max_steps`` bounds the step attempts (accepted or rejected) of every row; ``first_step``
    (hours) replaces the automatic starting step. A row that fails (non-finite state, step
    underflow, too many steps) raises an error naming the batch rows; :meth:`solve` returns
    the per-row status instead.
    """

    rtol: Final[float]
    atol: Final[float]
    max_steps: Final[int]
    first_step: Final[float]  # 0: automatic
    order: Final[int] = 5

    def __init__(self, field: nn.Module, rtol: float = 1e-5, atol: float = 1e-6, max_steps: int = 1000,
                 first_step: Optional[float] = None):
        super().__init__()
        from twinode.errors import ConfigError

        if not (rtol > 0 and atol > 0):
            raise ConfigError("solver.rtol/atol", (rtol, atol), hint="tolerances must be positive")
        if int(max_steps) < 1:
            raise ConfigError("solver.max_steps", max_steps, hint="give a positive number of steps")
        if first_step is not None and not first_step > 0:
            raise ConfigError("solver.first_step", first_step, hint="give a positive step in hours, or null for automatic")
        self.field = field
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.max_steps = int(max_steps)
        self.first_step = float(first_step) if first_step is not None else 0.0

    def _f(self, tau: Tensor, z: Tensor, t0: Tensor, sign: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        return sign.unsqueeze(1) * self.field(t0 + sign * tau, z, doses, s)

    def _step(self, tau: Tensor, z: Tensor, k1: Tensor, h: Tensor, t0: Tensor, sign: Tensor, doses: Tensor,
              s: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """One Dormand-Prince step of size ``h [B]``: ``z1``, ``f(z1)``, error estimate, midpoint."""
        hc = h.unsqueeze(1)
        k2 = self._f(tau + 0.2 * h, z + hc * (0.2 * k1), t0, sign, doses, s)
        k3 = self._f(tau + 0.3 * h, z + hc * (3.0 / 40.0 * k1 + 9.0 / 40.0 * k2), t0, sign, doses, s)
        k4 = self._f(tau + 0.8 * h, z + hc * (44.0 / 45.0 * k1 - 56.0 / 15.0 * k2 + 32.0 / 9.0 * k3),
                     t0, sign, doses, s)
        k5 = self._f(tau + 8.0 / 9.0 * h, z + hc * (19372.0 / 6561.0 * k1 - 25360.0 / 2187.0 * k2
                                                     + 64448.0 / 6561.0 * k3 - 212.0 / 729.0 * k4),
                     t0, sign, doses, s)
        k6 = self._f(tau + h, z + hc * (9017.0 / 3168.0 * k1 - 355.0 / 33.0 * k2 + 46732.0 / 5247.0 * k3
                                        + 49.0 / 176.0 * k4 - 5103.0 / 18656.0 * k5), t0, sign, doses, s)
        z1 = z + hc * (35.0 / 384.0 * k1 + 500.0 / 1113.0 * k3 + 125.0 / 192.0 * k4 - 2187.0 / 6784.0 * k5
                       + 11.0 / 84.0 * k6)
        k7 = self._f(tau + h, z1, t0, sign, doses, s)  # first stage of the next step (FSAL)
        err = hc * ((35.0 / 384.0 - 1951.0 / 21600.0) * k1 + (500.0 / 1113.0 - 22642.0 / 50085.0) * k3
                    + (125.0 / 192.0 - 451.0 / 720.0) * k4 + (-2187.0 / 6784.0 + 12231.0 / 42400.0) * k5
                    + (11.0 / 84.0 - 649.0 / 6300.0) * k6 - 1.0 / 60.0 * k7)
        zmid = z + hc * (6025192743.0 / 30085553152.0 / 2.0 * k1 + 51252292925.0 / 65400821598.0 / 2.0 * k3
                         - 2691868925.0 / 45128329728.0 / 2.0 * k4 + 187940372067.0 / 1594534317056.0 / 2.0 * k5
                         - 1776094331.0 / 19743644256.0 / 2.0 * k6 + 11237099.0 / 235043384.0 / 2.0 * k7)
        return z1, k7, err, zmid

    def solve(self, z0: Tensor, t0: Tensor, sign: Tensor, tau_q: Tensor, doses: Tensor,
              s: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Integrate row ``b`` in ``tau`` from 0 to ``max(tau_q[b])`` and read every ``tau_q > 0``.

        ``sign [B]`` is +1 (forward in time) or -1 (backward). Returns ``z [B, Q, L]`` (``z0``
        where ``tau_q <= 0``), ``status [B]`` (:class:`Status` values) and step attempts ``[B]``.
        """
        B, L = z0.shape[0], z0.shape[1]
        dtype = z0.dtype
        t0 = t0.to(dtype)
        sign = sign.to(dtype)
        tau_q = tau_q.to(dtype)
        end = tau_q.clamp(min=0.0).amax(1) if tau_q.shape[1] > 0 else torch.zeros_like(t0)
        tau = torch.zeros_like(end)
        z = z0
        f = self._f(tau, z, t0, sign, doses, s)
        out = z0.unsqueeze(1).expand(B, tau_q.shape[1], L)
        status = torch.where(end > 0, Status.RUNNING.value, Status.SUCCESS.value)
        finite0 = torch.isfinite(f).all(1) & torch.isfinite(z).all(1)
        status = torch.where(finite0, status, Status.NONFINITE.value)
        if self.first_step > 0:
            h = torch.full_like(end, self.first_step)
        else:
            h0 = trial_step(z, f, self.rtol, self.atol)
            f1 = self._f(h0, z + h0.unsqueeze(1) * f, t0, sign, doses, s)
            h = initial_step(z, f, z + h0.unsqueeze(1) * f, f1, h0, self.rtol, self.atol, self.order - 1)
        h = torch.where(torch.isfinite(h) & (h > 0), h, torch.full_like(h, 1e-6))
        attempts = torch.zeros(B, dtype=torch.int64, device=z0.device)
        n = 0
        while n < self.max_steps and bool((status == Status.RUNNING.value).any()):
            active = status == Status.RUNNING.value
            last = h >= end - tau
            hs = torch.where(active, torch.where(last, end - tau, h), torch.zeros_like(h))
            z1, f1, err, zmid = self._step(tau, z, f, hs, t0, sign, doses, s)
            ratio = rms_ratio(err, z, z1, self.rtol, self.atol).detach()
            finite = torch.isfinite(ratio) & torch.isfinite(z1).all(1) & torch.isfinite(f1).all(1)
            accept = active & finite & (ratio <= 1.0)
            tau1 = torch.where(last, end, tau + hs)
            # Dense output for the queries this accepted step covers.
            hit = accept.unsqueeze(1) & (tau_q > tau.unsqueeze(1)) & (tau_q <= tau1.unsqueeze(1))
            theta = ((tau_q - tau.unsqueeze(1)) / hs.clamp(min=1e-300).unsqueeze(1)).clamp(0.0, 1.0)
            out = torch.where(hit.unsqueeze(-1), quartic(z, z1, zmid, f, f1, hs, theta), out)
            keep = accept.unsqueeze(1)
            z = torch.where(keep, z1, z)
            f = torch.where(keep, f1, f)
            tau = torch.where(accept, tau1, tau)
            h = torch.where(active, next_step(hs, torch.where(finite, ratio, torch.full_like(ratio, float("nan"))),
                                              self.order), h)
            status = torch.where(accept & last, Status.SUCCESS.value, status)
            # No progress possible: h vanishes against tau or against the span.
            stuck = active & ~accept & ((tau + h <= tau) | (end + h <= end))
            status = torch.where(stuck, torch.where(finite, Status.UNDERFLOW.value, Status.NONFINITE.value), status)
            attempts = attempts + active.to(torch.int64)
            n += 1
        status = torch.where(status == Status.RUNNING.value, Status.MAX_STEPS.value, status)
        return out, status, attempts

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """Latent states at query times ``tq [B, Q]`` (absolute hours) -> ``[B, Q, L]``."""
        B, L = z0.shape[0], z0.shape[1]
        rel = tq.to(z0.dtype) - t0.to(z0.dtype).unsqueeze(1)
        out = z0.unsqueeze(1).expand(B, rel.shape[1], L)
        if rel.numel() == 0:
            return out
        sides: List[bool] = torch.stack([(rel > 0).any(), (rel < 0).any()]).tolist()  # one host sync
        fwd, bwd = sides[0], sides[1]
        if fwd and bwd:
            one = torch.ones(B, dtype=z0.dtype, device=z0.device)
            z, status, _ = self.solve(torch.cat([z0, z0]), torch.cat([t0, t0]), torch.cat([one, -one]),
                                      torch.cat([rel, -rel]), torch.cat([doses, doses]), torch.cat([s, s]))
            raise_if_failed("dopri5", status, B)
            out = torch.where((rel > 0).unsqueeze(-1), z[:B], torch.where((rel < 0).unsqueeze(-1), z[B:], out))
        elif fwd or bwd:
            sign = torch.full((B,), 1.0 if fwd else -1.0, dtype=z0.dtype, device=z0.device)
            z, status, _ = self.solve(z0, t0, sign, rel * sign.unsqueeze(1), doses, s)
            raise_if_failed("dopri5", status, B)
            out = torch.where((rel != 0).unsqueeze(-1), z, out)
        return out

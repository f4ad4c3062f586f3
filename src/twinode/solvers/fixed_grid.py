"""Fixed-step Runge-Kutta on one grid shared by the batch, read out per subject.

Every subject's latent state starts at its own anchor time ``t0[b]``; the grid runs in time
*relative* to the anchor, so one solve serves the whole batch without a union of time
points. Queries at arbitrary times (before or after the anchor) are read off the grid by
cubic Hermite interpolation, which uses the vector field at the nodes (the first RK stage,
so the derivatives come for free) and keeps 4th-order accuracy between nodes.
"""


import math
from typing import Final

import torch
from torch import Tensor, nn

from twinode.solvers.hermite import hermite_readout
from twinode.solvers.status import Status, raise_if_failed

METHODS = ("euler", "midpoint", "rk4")


class FixedGridSolver(nn.Module):
    """Solve ``dz/dt = field(t, z, doses, s)`` from ``(t0, z0)`` to every query time.

    ``field`` is a module with ``drive(t[B,K], doses[B,M,4], s[B,E]) -> [B,K,P]`` (its
    z-independent inputs at K times) and ``given_drive(t[B], z[B,L], drive[B,P], doses, s) -> [B,L]``
    (e.g. :class:`~twinode.models.dynamics.MLPField`).
    ``step`` is the largest step in hours; the grid is shrunk to end exactly on the
    farthest query.
    """

    method: Final[str]
    step: Final[float]

    def __init__(self, field: nn.Module, method: str = "rk4", step: float = 0.5):
        super().__init__()
        if method not in METHODS:
            from twinode.errors import ConfigError

            raise ConfigError("solver.method", method, METHODS)
        if not step > 0:
            from twinode.errors import ConfigError

            raise ConfigError("solver.step", step, hint="the step must be a positive number of hours")
        if not hasattr(field, "given_drive"):
            from twinode.models.dynamics import DrivenField

            field = DrivenField(field)
        self.field = field
        self.method = method
        self.step = float(step)

    def integrate(self, z0: Tensor, t0: Tensor, span: float, doses: Tensor, s: Tensor) -> tuple[Tensor, Tensor, float]:
        """States and derivatives on the grid ``t0 + k*h``, ``k = 0..n`` covering ``span`` hours
        (negative: backwards). Returns ``zs [B, n+1, L]``, ``fs [B, n+1, L]`` and ``h``.

        Every stage time of the grid is known before the loop, so the field's z-independent
        drive (dose effects, statics) is computed for all of them in one call; the loop then
        only does the state-dependent arithmetic.
        """
        n = max(1, int(math.ceil(abs(span) / self.step - 1e-9)))
        h = span / n
        # Stage times on the half-step grid: node k is index 2k, its midpoint 2k+1.
        times = t0.unsqueeze(1) + torch.arange(2 * n + 1, dtype=z0.dtype, device=z0.device) * (0.5 * h)
        # One unbind, not an index per stage: the backward of each ``drive[:, j]`` would
        # allocate and fill a zero tensor of the whole drive (quadratic in the grid length).
        drive = self.field.drive(times, doses, s).unbind(1)
        stage_t = times.unbind(1)
        f = self.field.given_drive(t0, z0, drive[0], doses, s)
        z = z0
        zs = [z]
        fs = [f]
        for k in range(n):
            t_end, d_end = stage_t[2 * k + 2], drive[2 * k + 2]
            if self.method == "euler":
                z = torch.add(z, f, alpha=h)
            elif self.method == "midpoint":
                k2 = self.field.given_drive(stage_t[2 * k + 1], torch.add(z, f, alpha=0.5 * h), drive[2 * k + 1], doses, s)
                z = torch.add(z, k2, alpha=h)
            else:
                t_mid, d_mid = stage_t[2 * k + 1], drive[2 * k + 1]
                k2 = self.field.given_drive(t_mid, torch.add(z, f, alpha=0.5 * h), d_mid, doses, s)
                k3 = self.field.given_drive(t_mid, torch.add(z, k2, alpha=0.5 * h), d_mid, doses, s)
                k4 = self.field.given_drive(t_end, torch.add(z, k3, alpha=h), d_end, doses, s)
                incr = torch.add(torch.add(f, k2, alpha=2.0), torch.add(k4, k3, alpha=2.0))
                z = torch.add(z, incr, alpha=h / 6.0)
            f = self.field.given_drive(t_end, z, d_end, doses, s)
            zs.append(z)
            fs.append(f)
        return torch.stack(zs, 1), torch.stack(fs, 1), h

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        """Latent states at query times ``tq [B, Q]`` (absolute hours) -> ``[B, Q, L]``."""
        rel = tq - t0.unsqueeze(1)
        out = z0.unsqueeze(1).expand(rel.shape[0], rel.shape[1], z0.shape[1])
        fwd = float(rel.max().item()) if rel.numel() > 0 else 0.0
        bwd = float(rel.min().item()) if rel.numel() > 0 else 0.0
        if fwd > 0.0:
            zs, fs, h = self.integrate(z0, t0, fwd, doses, s)
            out = torch.where((rel > 0).unsqueeze(-1), hermite_readout(zs, fs, h, rel.clamp(min=0.0)), out)
        if bwd < 0.0:
            zs, fs, h = self.integrate(z0, t0, bwd, doses, s)
            out = torch.where((rel < 0).unsqueeze(-1), hermite_readout(zs, fs, h, rel.clamp(max=0.0)), out)
        # A fixed step cannot adapt, so a blow-up shows as non-finite output; name the rows.
        finite = torch.isfinite(out).flatten(1).all(1)
        raise_if_failed(self.method, torch.where(finite, Status.SUCCESS.value, Status.NONFINITE.value), out.shape[0])
        return out

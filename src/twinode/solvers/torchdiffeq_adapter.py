"""torchdiffeq (``odeint`` / ``odeint_adjoint``) behind the solver call interface, for training.

torchdiffeq integrates one time vector for the whole batch, while every subject has its own
anchor and query times. Rather than solving on the union of all query times (memory and the
backward pass grow with B*Q), each row gets its own clock: a shared variable ``s in [0, Q]``
runs through the row's sorted query distances ``0 = k_0 <= k_1 <= ... <= k_Q``, with
``tau(s) = k_j + (k_{j+1} - k_j) * phi(s - j)`` on segment ``j``. torchdiffeq then returns
every row's state at every query from outputs at the integers ``s = 1..Q``.
``phi(x) = x^4 (35 - 84x + 70x^2 - 20x^3)`` has ``phi' = 140 x^3 (1-x)^3``, which vanishes
to third order at both ends, so ``dz/ds`` is C^3 across segment joints and the adaptive
step needs no restarts there (a piecewise-linear clock would put a kink at each joint).

Cost: the step size is shared by the batch (the fastest-changing row sets it), each
segment's clock peaks at 2.19x the row's average speed, and the joints still cost some extra
steps; padded or repeated queries are zero-length segments and cost nothing. Both time
directions run as one stacked batch of 2B rows when a batch queries both sides.

Not scriptable: export calls :func:`with_scriptable_solvers` on the whole model (a copy with
the equivalent :class:`Dopri5Solver` sharing the field), or :meth:`TorchdiffeqSolver.to_scriptable`.
"""

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from twinode.errors import ConfigError, ExportError, SolverError
from twinode.solvers.dopri5 import Dopri5Solver

ADAPTIVE = ("dopri5",)


class _ClockedField(nn.Module):
    """``dz/ds`` of each row on its own query clock; the field is a submodule so the adjoint
    finds its parameters."""

    def __init__(self, field: nn.Module, knots: Tensor, t0: Tensor, sign: Tensor, doses: Tensor, s: Tensor):
        super().__init__()
        self.field = field
        self.knots, self.t0, self.sign, self.doses, self.s = knots, t0, sign, doses, s
        self.n_seg = knots.shape[1] - 1

    def forward(self, sv: Tensor, z: Tensor) -> Tensor:
        j = sv.detach().floor().clamp(0, self.n_seg - 1).long().reshape(1)
        x = (sv - j.to(sv.dtype)).clamp(0.0, 1.0).to(z.dtype)
        k0 = self.knots.index_select(1, j).squeeze(1)
        d = self.knots.index_select(1, j + 1).squeeze(1) - k0
        tau = k0 + d * (x ** 4 * (35.0 - 84.0 * x + 70.0 * x ** 2 - 20.0 * x ** 3))
        rate = d * (140.0 * x ** 3 * (1.0 - x) ** 3)
        return (rate * self.sign).unsqueeze(1) * self.field(self.t0 + self.sign * tau, z, self.doses, self.s)


class TorchdiffeqSolver(nn.Module):
    """``solver(z0[B,L], t0[B], tq[B,Q], doses, s) -> z[B,Q,L]`` through torchdiffeq.

    ``method`` is any torchdiffeq method; ``options`` go to torchdiffeq unchanged. A fixed-step
    method's ``step_size`` counts in clock units (one query segment is 1, whatever its length
    in hours), which is why only dopri5 has a scriptable twin; ``adjoint=True`` uses ``odeint_adjoint``
    with the field's parameters and the static/dose inputs as adjoint parameters.
    """

    def __init__(self, field: nn.Module, method: str = "dopri5", rtol: float = 1e-5, atol: float = 1e-6,
                 adjoint: bool = False, options: Optional[dict] = None):
        super().__init__()
        from torchdiffeq._impl.odeint import SOLVERS

        if method not in SOLVERS:
            raise ConfigError("solver.method", method, sorted(SOLVERS))
        self.field = field
        self.method, self.rtol, self.atol, self.adjoint = method, float(rtol), float(atol), bool(adjoint)
        self.options = dict(options) if options else {}

    def _odeint(self, func: _ClockedField, z0: Tensor, grid: Tensor) -> Tensor:
        import torchdiffeq

        kw = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options or None)
        if not self.adjoint:
            return torchdiffeq.odeint(func, z0, grid, **kw)
        # Inputs captured by the field (static embedding, doses) need gradients too.
        extra = tuple(x for x in (func.s, func.doses) if x.requires_grad)
        return torchdiffeq.odeint_adjoint(func, z0, grid, adjoint_params=tuple(self.field.parameters()) + extra, **kw)

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        B, L = z0.shape
        rel = tq.to(z0.dtype) - t0.to(z0.dtype).unsqueeze(1)
        out = z0.unsqueeze(1).expand(B, rel.shape[1], L)
        if rel.numel() == 0:
            return out
        signs = [sg for sg, any_ in ((1.0, (rel > 0).any()), (-1.0, (rel < 0).any())) if bool(any_)]
        if not signs:
            return out
        n = len(signs)
        sign = torch.cat([torch.full((B,), sg, dtype=z0.dtype, device=z0.device) for sg in signs])
        tau = (rel.repeat(n, 1) * sign.unsqueeze(1)).clamp(min=0.0)
        tau_sorted, perm = tau.sort(1)
        knots = torch.cat([torch.zeros_like(tau_sorted[:, :1]), tau_sorted], 1)
        func = _ClockedField(self.field, knots, t0.to(z0.dtype).repeat(n), sign, doses.repeat(n, 1, 1), s.repeat(n, 1))
        grid = torch.arange(rel.shape[1] + 1, dtype=z0.dtype, device=z0.device)
        try:
            sol = self._odeint(func, z0.repeat(n, 1), grid)
        except AssertionError as e:  # torchdiffeq reports underflow / max_num_steps by assert
            raise SolverError(f"torchdiffeq {self.method} solve failed for the batch ({e}). Try a smaller learning "
                              "rate, gradient clipping (trainer.gradient_clip_val), looser tolerances, or a fixed-step "
                              "solver (solver=rk4).") from e
        zs = sol[1:].transpose(0, 1)  # [nB, Q, L] in sorted query order
        z = torch.empty_like(zs).scatter(1, perm.unsqueeze(-1).expand_as(zs), zs)
        bad = ~torch.isfinite(z).all(2).all(1)
        if bool(bad.any()):
            rows = sorted({int(r) % B for r in torch.nonzero(bad).flatten().tolist()})
            err = SolverError(f"torchdiffeq {self.method} solve failed: non-finite latent state in batch rows {rows}. "
                              "Try a smaller learning rate, gradient clipping (trainer.gradient_clip_val), or a "
                              "fixed-step solver (solver=rk4).")
            err.rows = rows
            raise err
        for i, sg in enumerate(signs):
            side = (rel > 0) if sg > 0 else (rel < 0)
            out = torch.where(side.unsqueeze(-1), z[i * B:(i + 1) * B], out)
        return out

    def to_scriptable(self) -> nn.Module:
        """The equivalent scriptable solver, sharing this solver's field module."""
        if self.method in ADAPTIVE:
            return Dopri5Solver(self.field, rtol=self.rtol, atol=self.atol)
        raise ExportError(f"torchdiffeq method {self.method!r} has no scriptable twin: export supports "
                          f"{', '.join(ADAPTIVE)}; for fixed steps train with FixedGridSolver (solver=rk4) instead")

    def __prepare_scriptable__(self):
        raise ExportError("TorchdiffeqSolver cannot be scripted (torchdiffeq.odeint is plain Python). Export a copy "
                          "made by twinode.solvers.with_scriptable_solvers(model), or set model.solver = "
                          "model.solver.to_scriptable() (an equivalent Dopri5Solver/FixedGridSolver sharing the field).")


def with_scriptable_solvers(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every TorchdiffeqSolver replaced by its scriptable twin."""
    model = copy.deepcopy(model)
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, TorchdiffeqSolver):
                setattr(parent, name, child.to_scriptable())
    if isinstance(model, TorchdiffeqSolver):
        model = model.to_scriptable()
    return model

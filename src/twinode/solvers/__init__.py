"""Scriptable ODE solvers for the latent dynamics, and a torchdiffeq adapter for training.

Every solver is built as ``solver(field=field)`` and called as
``solver(z0[B,L], t0[B], tq[B,Q], doses[B,M,4], s[B,E]) -> z[B,Q,L]``.
"""

from twinode.solvers.dopri5 import Dopri5Solver
from twinode.solvers.fixed_grid import FixedGridSolver
from twinode.solvers.status import Status
from twinode.solvers.torchdiffeq_adapter import TorchdiffeqSolver, with_scriptable_solvers

__all__ = ["Dopri5Solver", "FixedGridSolver", "Status", "TorchdiffeqSolver", "with_scriptable_solvers"]

"""Scriptable ODE solvers for the latent dynamics."""

from twinode.solvers.fixed_grid import FixedGridSolver

__all__ = ["FixedGridSolver"]

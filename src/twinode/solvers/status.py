"""Integer status codes of a per-sample solve, and the error raised when a solve fails.

A solve returns one code per batch row. TorchScript cannot close over module-level ints but
does compile Enums, so the codes live in ``Status`` and scripted code reads ``.value``.
"""

from enum import Enum
from typing import List

import torch
from torch import Tensor

from twinode.errors import SolverError



class Status(Enum):
    RUNNING = 0
    SUCCESS = 1
    MAX_STEPS = 2
    UNDERFLOW = 3
    NONFINITE = 4




def _rows(status: Tensor, code: int, n_rows: int) -> List[int]:
    # A solve may stack both time directions as 2B rows; row b and b + B are subject b.
    idx = torch.nonzero(status == code).flatten() % n_rows
    rows: List[int] = torch.unique(idx).tolist()
    return rows


def failure_message(solver: str, status: Tensor, n_rows: int) -> str:
    """One line naming the failing batch rows per cause, and what to do."""
    parts: List[str] = []
    causes = [(Status.NONFINITE.value, "non-finite latent state (NaN/inf from the initial state or the vector field)"),
              (Status.UNDERFLOW.value, "step size underflow (the dynamics are too stiff or blow up)"),
              (Status.MAX_STEPS.value, "max_steps exceeded")]
    for code, text in causes:
        rows = _rows(status, code, n_rows)
        if len(rows) > 0:
            parts.append(text + " in batch rows " + str(rows))
    hint = ("Try a smaller learning rate, gradient clipping (trainer.gradient_clip_val), looser tolerances "
            "or a larger max_steps, or a fixed-step solver (solver=rk4).")
    return solver + " solve failed: " + "; ".join(parts) + ". " + hint


def raise_if_failed(solver: str, status: Tensor, n_rows: int) -> None:
    """Raise when any row did not finish with SUCCESS (one host sync)."""
    if bool((status != Status.SUCCESS.value).any()):
        msg = failure_message(solver, status, n_rows)
        if torch.jit.is_scripting():
            raise RuntimeError(msg)
        else:
            bad: List[int] = torch.unique(torch.nonzero(status != Status.SUCCESS.value).flatten() % n_rows).tolist()
            err = SolverError(msg)
            err.rows = bad
            raise err

"""A direct path from the doses to each channel's level: the pharmacodynamic readout.

Without it a dose reaches a measurement only through the latent state: the field integrates
the dose's effect compartment once more, so the response the twin can draw rises later and
peaks lower than a drug that acts through one more compartment (a vasopressor lifting MAP,
which then relaxes toward its new target). The readout adds, to every channel's level,

    gain[d, c] * u_c(t)

where ``u_c`` is dose channel ``c``'s own closed-form chain of two compartments (a
:class:`~twinode.models.dynamics.DoseEffect` with learned absorption and elimination rates,
separate from the field's) and ``gain`` is learned, one number per (measurement, dose
channel) pair, starting at 0: the twin starts as it was without the readout. The gain is the
population's; how one subject answers differently stays with the latent path, which still
takes the doses as inputs. (A gain that also depended on the anchor state was measured: it
fitted the history better and followed the true effects across subjects worse;
docs/results.md.)
"""

from typing import List, Optional

import torch
from torch import Tensor, nn

from twinode.models.dynamics import DoseEffect


class DoseReadout(nn.Module):
    """``forward(t [B, K], doses [B, M, 4]) -> [B, K, D]``: the readout's shift of each
    channel's level (normalised units) at the times ``t``."""

    def __init__(self, n_measurements: int, n_interventions: int, half_life_h: Optional[List[float]] = None):
        super().__init__()
        self.kinetics = DoseEffect(n_interventions, half_life_h)
        # A plain zero tensor, not an initialised layer: building the readout draws no random
        # numbers, so every other weight of the twin starts where it would without it.
        self.gain = nn.Parameter(torch.zeros(n_measurements, n_interventions))

    def forward(self, t: Tensor, doses: Tensor) -> Tensor:
        return torch.matmul(self.kinetics(t, doses), self.gain.t())

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

With ``saturation`` (a starting value ``s0 > 0``) the chain's level saturates before the
gain, ``u / (1 + s u)`` with ``s`` learned per dose channel: a second dose on top of drug
still present lifts less than the first, as an Emax response does (on in
``model=anchored_ode``, from ``s0 = 1``; docs/results.md).
"""

import math
from typing import Final, List, Optional

import torch
from torch import Tensor, nn

from twinode.models.dynamics import DoseEffect


class DoseReadout(nn.Module):
    """``forward(t [B, K], doses [B, M, 4]) -> [B, K, D]``: the readout's shift of each
    channel's level (normalised units) at the times ``t``."""

    saturating: Final[bool]

    def __init__(self, n_measurements: int, n_interventions: int, half_life_h: Optional[List[float]] = None,
                 saturation: Optional[float] = None):
        super().__init__()
        if saturation is not None and not saturation > 0:
            raise ValueError(f"dose readout saturation must be > 0 (the starting s of u / (1 + s u)); got {saturation}. "
                             "Set model.twin.dose_readout_saturation to a positive number, or null for a linear readout")
        self.kinetics = DoseEffect(n_interventions, half_life_h)
        self.saturating = saturation is not None
        # log s per dose channel; a linear readout keeps it (unused) so both share one layout.
        self.log_saturation = nn.Parameter(torch.full((n_interventions,), math.log(saturation or 1.0)),
                                           requires_grad=self.saturating)
        # A plain zero tensor, not an initialised layer: building the readout draws no random
        # numbers, so every other weight of the twin starts where it would without it.
        self.gain = nn.Parameter(torch.zeros(n_measurements, n_interventions))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "log_saturation"
        if key not in state_dict and prefix + "gain" in state_dict:  # a linear readout saved before the option
            state_dict[key] = self.log_saturation.detach().clone()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, t: Tensor, doses: Tensor) -> Tensor:
        u = self.kinetics(t, doses)
        if self.saturating:
            u = u / (1.0 + torch.exp(self.log_saturation) * u.clamp(min=0.0))
        return torch.matmul(u, self.gain.t())

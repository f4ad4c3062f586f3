"""Mechanistic priors for :class:`~twinode.models.dynamics.HybridField`.

A prior is a scriptable module ``forward(t[B], z[B,L], u[B,C], s[B,E]) -> dz/dt [B,L]``,
built by a factory ``make(latent_dim=, n_interventions=, static_dim=)`` so a config can name
it (``model.twin.mechanistic``, a Hydra partial) without knowing the data's dimensions.
"""


import math

import torch
from torch import Tensor, nn

from twinode.errors import ConfigError


class VasopressorMAP(nn.Module):
    """One-compartment drug driving a mean-arterial-pressure relaxation (the physiology of the
    synthetic ICU cohort, ``twinode.data.simulators.synthetic_icu``).

    The drug concentration is the dose effect ``u[:, drug_channel]``: a bolus raises it and
    it decays first-order with the learned half-life. Two latent coordinates get a meaning:
    ``z[:, map_index]`` is pressure and ``z[:, target_index]`` its patient-specific set point.
    Pressure relaxes towards the set point lifted by an Emax drug response::

        dz_map/dt = rate * (z_target + emax * c / (ec50 + c) - z_map)

    ``rate``, ``emax`` and ``ec50`` are learned (positive); other coordinates get no prior
    term. The set point's drift, and everything else, is the neural residual's job.
    """

    def __init__(self, latent_dim: int, n_interventions: int, static_dim: int = 0, drug_channel: int = 0,
                 map_index: int = 0, target_index: int = 1, rate_per_h: float = 0.6, emax: float = 1.0,
                 ec50: float = 1.0):
        super().__init__()
        if not 0 <= drug_channel < n_interventions:
            raise ConfigError("model.twin.mechanistic.drug_channel", drug_channel,
                              hint=f"VasopressorMAP needs intervention channel {drug_channel}, the data has "
                                   f"{n_interventions} intervention channel(s); use it with data that records the drug")
        if not (0 <= map_index < latent_dim and 0 <= target_index < latent_dim and map_index != target_index):
            raise ConfigError("model.twin.mechanistic.map_index", (map_index, target_index),
                              hint=f"VasopressorMAP needs two distinct latent indices < latent_dim={latent_dim}")
        self.drug_channel, self.map_index, self.target_index = drug_channel, map_index, target_index
        inv_softplus = lambda v: math.log(math.expm1(v))
        self.raw_rate = nn.Parameter(torch.tensor(inv_softplus(rate_per_h)))
        self.raw_emax = nn.Parameter(torch.tensor(inv_softplus(emax)))
        self.raw_ec50 = nn.Parameter(torch.tensor(inv_softplus(ec50)))
        onehot = torch.zeros(latent_dim)
        onehot[map_index] = 1.0
        self.register_buffer("map_onehot", onehot)

    def forward(self, t: Tensor, z: Tensor, u: Tensor, s: Tensor) -> Tensor:
        f = torch.nn.functional.softplus
        c = u[:, self.drug_channel].clamp(min=0.0)
        response = f(self.raw_emax) * c / (f(self.raw_ec50) + c)
        d_map = f(self.raw_rate) * (z[:, self.target_index] + response - z[:, self.map_index])
        return d_map.unsqueeze(-1) * self.map_onehot

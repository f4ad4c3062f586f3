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


class GlucoseMinimalModel(nn.Module):
    """A reduced glucose-insulin physiology (Bergman's minimal model, with the Dalla Man meal
    and subcutaneous-insulin pathways as the dose kinetics) for the glucose twin.

    The dose effects ``u`` are the two-compartment responses of
    :class:`~twinode.models.dynamics.DoseEffect`: for meals, gut glucose appearing in plasma;
    for insulin boluses and basal, plasma insulin from the subcutaneous depot. Four latent
    coordinates get a meaning (model units, i.e. normalised glucose)::

        dg/dt = egp + a_meal * u_meal - si * exp(tanh s) * x * (g + c) - p1 * g
        dx/dt = p2 * (b_bolus * u_bolus + b_basal * u_basal - x)

    (with ``x`` in [0, 4], ``g + c >= 0`` and each rate at most 2.5/h, so a fixed 1-h RK4 step
    stays stable whatever state the encoder proposes)
        d egp/dt = d s/dt = 0

    ``g`` glucose, ``x`` remote insulin action, ``egp`` the patient's net endogenous glucose
    production and ``s`` the log of the patient's insulin sensitivity relative to the cohort's.
    The encoder infers all four at the anchor from the history (``egp`` and ``s`` are the
    patient's parameters: the prior keeps them constant, the residual may move them); the
    rates ``a_meal, si, c, p1, p2, b_*`` are learned cohort-wide (positive, softplus).
    Other coordinates get no prior term. Identifiability: with CGM alone, ``egp``, ``si x c``
    and ``p1`` trade off at steady state; only glucose responses to meals and insulin changes
    separate them.
    """

    def __init__(self, latent_dim: int, n_interventions: int, static_dim: int = 0, meal_channel: int = 0,
                 bolus_channel: int = 1, basal_channel: int = 2, glucose_index: int = 0, action_index: int = 1,
                 egp_index: int = 2, sensitivity_index: int = 3, p1_per_h: float = 0.1, p2_per_h: float = 1.0,
                 si: float = 0.5, c: float = 3.0, meal_gain: float = 0.5, insulin_gain: float = 1.0):
        super().__init__()
        for name, ch in (("meal_channel", meal_channel), ("bolus_channel", bolus_channel), ("basal_channel", basal_channel)):
            if not 0 <= ch < n_interventions:
                raise ConfigError(f"model.twin.mechanistic.{name}", ch,
                                  hint=f"GlucoseMinimalModel needs intervention channel {ch}; the data has {n_interventions} "
                                       "(meals, insulin boluses, basal insulin: the glucose FeatureSpec)")
        idx = (glucose_index, action_index, egp_index, sensitivity_index)
        if len(set(idx)) != 4 or not all(0 <= i < latent_dim for i in idx):
            raise ConfigError("model.twin.mechanistic.glucose_index", idx,
                              hint=f"GlucoseMinimalModel needs four distinct latent indices < latent_dim={latent_dim}")
        self.meal_channel, self.bolus_channel, self.basal_channel = meal_channel, bolus_channel, basal_channel
        self.g, self.x, self.egp, self.s = idx
        inv_softplus = lambda v: math.log(math.expm1(v))
        self.raw = nn.Parameter(torch.tensor([inv_softplus(v) for v in (p1_per_h, p2_per_h, si, c, meal_gain,
                                                                         insulin_gain, insulin_gain)]))
        eye = torch.eye(latent_dim)
        self.register_buffer("onehot_g", eye[self.g].clone())
        self.register_buffer("onehot_x", eye[self.x].clone())

    def forward(self, t: Tensor, z: Tensor, u: Tensor, s: Tensor) -> Tensor:
        p = torch.nn.functional.softplus(self.raw)
        p1, p2, si, c, a_meal, b_bolus, b_basal = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
        g, x = z[:, self.g], z[:, self.x]
        # Bounded so that a fixed 1-h RK4 step stays stable whatever the encoder's state: the
        # sensitivity within e^-1..e of the cohort's, insulin action in [0, 4], each rate <= 2.5/h.
        sens = si * torch.exp(torch.tanh(z[:, self.s]))
        k_ins = (sens * x.clamp(0.0, 4.0)).clamp(max=2.5)
        dg = (z[:, self.egp] + a_meal * u[:, self.meal_channel] - k_ins * (g + c).clamp(min=0.0)
              - p1.clamp(max=2.5) * g)
        dx = p2.clamp(max=2.5) * (b_bolus * u[:, self.bolus_channel] + b_basal * u[:, self.basal_channel] - x)
        return dg.unsqueeze(-1) * self.onehot_g + dx.unsqueeze(-1) * self.onehot_x

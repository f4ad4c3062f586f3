"""PatientTwin: the latent ODE model of a patient, plain torch and TorchScript-compatible.

history --encoder--> q(z_a) at the anchor (last observed time), for every encoder
  (GRU with time gaps, forward; ODE-RNN, backward by default: see models.encoders)
z_a --ODE dz/dt = f(z, u(t), s)--> z(t) at any query time, before or after the anchor
z(t) --decoder--> Gaussian p(x(t) | z(t)) in normalised units

``decoder="anchored"`` (the default twin) decodes each channel from its own observations
around the query (last value and age, next value and gap: models.anchoring) relaxing toward
a subject level, and lets z(t) add the deviation the dynamics explain
(models.decoders.AnchoredDecoder); ``decoder="latent"`` decodes from z(t) alone (the
classic latent ODE). The anchored decoder needs the history at decode time, so
``decode_at`` and ``risk_logit`` take it as optional trailing arguments.

Lightning wraps this module for training; export scripts this very module.
"""


from typing import Final

from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from twinode.errors import ConfigError
from twinode.models.anchoring import anchor_indices, anchors_at, history_extremes, history_stats, last_values
from twinode.models.decoders import AnchoredDecoder, GaussianDecoder
from twinode.models.dose_readout import DoseReadout
from twinode.models.dynamics import DoseEffect, HybridField, MLPField
from twinode.models.encoders import GRUDeltaEncoder, ODERNNEncoder
from twinode.solvers import FixedGridSolver


ENCODERS = ("gru_delta", "ode_rnn")
DECODERS = ("latent", "anchored")


class PatientTwin(nn.Module):
    """``encoder``: ``gru_delta`` or ``ode_rnn`` (``encoder_direction``, ``encoder_ode_steps``,
    ``encoder_method`` configure the latter). ``mechanistic``: None for a purely neural field,
    or a factory ``make(latent_dim=, n_interventions=, static_dim=) -> nn.Module`` for a
    :class:`HybridField` prior (e.g. ``models.mechanistic.VasopressorMAP``).
    ``dose_time_scales``: each dose channel's response at these time scales as the field's
    inputs (``models.dynamics.DoseEffect``; None: the chain alone). ``encoder_doses``: the
    encoder also reads each dose channel's effect at every observation time (its own
    ``DoseEffect``), so the state at the anchor can hold how this subject answered earlier
    doses, not only what was measured. ``dose_readout`` (anchored decoder with dose channels
    only): each dose also shifts every channel's level directly through its own two-compartment
    chain and a learned gain per channel pair (:class:`models.dose_readout.DoseReadout`), as
    well as through the latent state; ``dose_readout_saturation`` (a starting ``s``, None:
    linear) saturates the chain's level first, ``u / (1 + s u)``."""

    variational: Final[bool]
    has_risk: Final[bool]
    anchored: Final[bool]
    encoder_doses: Final[bool]
    has_dose_readout: Final[bool]
    n_measurements: Final[int]

    def __init__(self, n_measurements: int, n_static: int, n_interventions: int, solver=None,
                 latent_dim: int = 16, hidden: int = 64, encoder_hidden: int = 64, static_embed: int = 8,
                 field_layers: int = 2, half_life_h: Optional[List[float]] = None, variational: bool = True,
                 risk_head: bool = False, encoder: str = "gru_delta", encoder_direction: str = "backward",
                 encoder_ode_steps: int = 1, encoder_method: str = "rk4", encoder_time_scale_h: float = 24.0,
                 mechanistic: Optional[Callable[..., nn.Module]] = None, decoder: str = "latent",
                 anchor_rate_per_h: float = 0.1, dose_time_scales: Optional[List[float]] = None,
                 anchor_dropout: float = 0.0, encoder_doses: bool = False,
                 anchor_smoothing_h: Optional[List[float]] = None, anchor_context_hidden: int = 0,
                 anchor_context_forecast: bool = False, dose_readout: bool = False,
                 dose_readout_saturation: Optional[float] = None):
        super().__init__()
        if n_measurements < 1:
            raise ValueError(f"a twin needs at least one measurement channel, got n_measurements={n_measurements}")
        self.n_measurements, self.n_static, self.n_interventions = n_measurements, n_static, n_interventions
        self.latent_dim = latent_dim
        self.variational = variational
        self.static_net = nn.Sequential(nn.Linear(2 * n_static, static_embed), nn.Tanh())
        # Without dose channels there is nothing to read: the encoder stays as it was.
        self.encoder_doses = bool(encoder_doses) and n_interventions > 0
        if self.encoder_doses:
            self.history_doses = DoseEffect(n_interventions, half_life_h)
        else:
            self.history_doses = nn.Identity()
        if encoder == "gru_delta":
            self.encoder = GRUDeltaEncoder(n_measurements, static_embed, latent_dim, encoder_hidden,
                                           n_interventions if self.encoder_doses else 0)
        elif encoder == "ode_rnn":
            self.encoder = ODERNNEncoder(n_measurements, static_embed, latent_dim, encoder_hidden, encoder_direction,
                                         encoder_ode_steps, encoder_method, encoder_time_scale_h,
                                         n_interventions if self.encoder_doses else 0)
        else:
            raise ConfigError("model.twin.encoder", encoder, ENCODERS)
        field = MLPField(latent_dim, n_interventions, static_embed, hidden, field_layers, half_life_h,
                         dose_time_scales=list(dose_time_scales) if dose_time_scales else None)
        if mechanistic is not None:
            field = HybridField(mechanistic(latent_dim=latent_dim, n_interventions=n_interventions,
                                            static_dim=static_embed), field)
        make_solver = solver if solver is not None else FixedGridSolver
        self.solver = make_solver(field=field)
        if decoder not in DECODERS:
            raise ConfigError("model.twin.decoder", decoder, DECODERS)
        self.anchored = decoder == "anchored"
        if self.anchored:
            self.decoder = AnchoredDecoder(latent_dim, n_measurements, hidden, rate_per_h=anchor_rate_per_h,
                                           dropout=anchor_dropout,
                                           smoothing_h=list(anchor_smoothing_h) if anchor_smoothing_h else None,
                                           context_hidden=anchor_context_hidden,
                                           context_forecast=anchor_context_forecast)
        else:
            self.decoder = GaussianDecoder(latent_dim, n_measurements, hidden)
        self.has_dose_readout = bool(dose_readout) and self.anchored and n_interventions > 0
        if self.has_dose_readout:
            self.dose_readout = DoseReadout(n_measurements, n_interventions, half_life_h, dose_readout_saturation)
        else:
            self.dose_readout = nn.Identity()
        # Outcome risk (e.g. in-hospital death) from the latent state at the anchor; the
        # anchored twin also gives it each channel's history mean, last value and count.
        self.has_risk = risk_head
        risk_in = latent_dim + static_embed + (6 * n_measurements if self.anchored else 0)
        self.risk_net = nn.Sequential(nn.Linear(risk_in, hidden), nn.Tanh(), nn.Linear(hidden, 1)) if risk_head else nn.Identity()

    @torch.jit.export
    def embed_static(self, s: Tensor, s_known: Tensor) -> Tensor:
        return self.static_net(torch.cat([s * s_known, s_known], dim=-1))

    @torch.jit.export
    def encode(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor, s_emb: Tensor,
               doses: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-std ``[B, L]`` at the anchor. ``doses [B, M, 4]`` (normalised
        amounts, as ``decode_at`` takes them) matter only to a twin with ``encoder_doses``; a
        dose after an observation's time adds nothing to it, so the whole plan may be passed."""
        if self.encoder_doses and doses is not None:
            u = torch.log1p(self.history_doses(hist_t, doses).clamp(min=0.0))
            return self.encoder(hist_t, hist_x, hist_m, hist_len, s_emb, u)
        return self.encoder(hist_t, hist_x, hist_m, hist_len, s_emb)

    @torch.jit.export
    def decode_at(self, z_a: Tensor, anchor: Tensor, tq: Tensor, doses: Tensor, s_emb: Tensor,
                  hist_t: Optional[Tensor] = None, hist_x: Optional[Tensor] = None, hist_m: Optional[Tensor] = None,
                  hist_len: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Predictive mean and log-std ``[B, Q, D]`` (normalised units) at query times ``tq [B, Q]``.
        The anchored decoder needs the (normalised, padded) history the state was encoded from."""
        if not self.anchored:
            return self.decoder(self.solver(z_a, anchor, tq, doses, s_emb))
        if hist_t is None or hist_x is None or hist_m is None or hist_len is None:
            raise RuntimeError("decode_at: this twin decodes from its anchors; pass hist_t, hist_x, hist_m, hist_len")
        # One solve for the queries and the history's times (the level's move at each anchor).
        q = tq.shape[1]
        t_all = torch.cat([tq, hist_t], dim=1)
        z_all = self.solver(z_a, anchor, t_all, doses, s_emb)
        level_shift: Optional[Tensor] = None
        if self.has_dose_readout:
            level_shift = self.dose_readout(t_all, doses)
        return self._decode_anchored(z_all[:, :q], z_all[:, q:], z_a, tq, hist_t, hist_x, hist_m, hist_len,
                                     level_shift)

    def _decode_anchored(self, zq: Tensor, zh: Tensor, z_a: Tensor, tq: Tensor, hist_t: Tensor, hist_x: Tensor,
                         hist_m: Tensor, hist_len: Tensor, level_shift: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        h_mean, h_cnt = history_stats(hist_x, hist_m, hist_len)
        last, when, _ = last_values(hist_t, hist_x, hist_m, hist_len)
        anchor_t = torch.gather(hist_t, 1, (hist_len - 1).clamp(min=0).unsqueeze(1))  # [B, 1]
        level, k, sp = self.decoder.subject_params(z_a, h_mean, h_cnt, last, (anchor_t - when).clamp(min=0.0))
        pi, po, ni, no = anchor_indices(hist_t, hist_m, hist_len, tq)
        pv, pa, _, nv, ng, _ = anchors_at(hist_t, hist_x, tq, pi, po, ni, no)
        corr = self.decoder.context_correction(hist_t, hist_x, hist_m, hist_len, tq)
        if self.decoder.smoothing:
            pk, nk = self.decoder.anchor_kernels(hist_t, hist_x, hist_m, hist_len, pi, ni)
            return self.decoder(zq, zh, level, k, sp, pi, pv, pa, po, ni, nv, ng, no, pk, nk, corr, level_shift)
        return self.decoder(zq, zh, level, k, sp, pi, pv, pa, po, ni, nv, ng, no, None, None, corr, level_shift)

    @torch.jit.export
    def risk_logit(self, z_a: Tensor, s_emb: Tensor, hist_t: Optional[Tensor] = None, hist_x: Optional[Tensor] = None,
                   hist_m: Optional[Tensor] = None, hist_len: Optional[Tensor] = None) -> Tensor:
        """Logit of the outcome ``[B]`` from the anchor state (and, for the anchored twin, the
        history's per-channel summaries); raises when there is no risk head."""
        if not self.has_risk:
            raise RuntimeError("this twin has no risk head (train with model.twin.risk_head=true and an outcome feature)")
        if not self.anchored:
            return self.risk_net(torch.cat([z_a, s_emb], dim=-1)).squeeze(-1)
        if hist_t is None or hist_x is None or hist_m is None or hist_len is None:
            raise RuntimeError("risk_logit: this twin reads the history's summaries; pass hist_t, hist_x, hist_m, hist_len")
        h_mean, h_cnt = history_stats(hist_x, hist_m, hist_len)
        last, _, seen = last_values(hist_t, hist_x, hist_m, hist_len)
        lo, hi = history_extremes(hist_x, hist_m, hist_len)
        feats = torch.cat([z_a, s_emb, h_mean, last, lo, hi, seen, torch.log1p(h_cnt)], dim=-1)
        return self.risk_net(feats).squeeze(-1)

    def forward(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor, anchor: Tensor,
                static: Tensor, static_known: Tensor, doses: Tensor, tq: Tensor) -> tuple[Tensor, Tensor]:
        """Deterministic forecast from the posterior mean."""
        s_emb = self.embed_static(static, static_known)
        z_mean, _ = self.encode(hist_t, hist_x, hist_m, hist_len, s_emb, doses)
        return self.decode_at(z_mean, anchor, tq, doses, s_emb, hist_t, hist_x, hist_m, hist_len)

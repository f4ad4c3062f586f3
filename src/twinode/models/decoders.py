"""Observation models p(x | z)."""


import math

from typing import Final, List, Optional, Tuple

import torch
from torch import Tensor, nn

from twinode.models.anchoring import smoothed_values
from twinode.models.history_context import HistoryContext


class GaussianDecoder(nn.Module):
    """Mean from the latent state; per-variable log-std learned from the state as well,
    floored so the likelihood cannot collapse on a few points."""

    def __init__(self, latent_dim: int, n_measurements: int, hidden: int = 64, min_std: float = 1e-2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, 2 * n_measurements))
        self.n = n_measurements
        self.log_min_std = math.log(min_std)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(z)
        mean, raw = out[..., : self.n], out[..., self.n:]
        log_std = self.log_min_std + torch.nn.functional.softplus(raw - self.log_min_std)
        return mean, log_std


def gaussian_nll(x: Tensor, mask: Tensor, mean: Tensor, log_std: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of masked Gaussian negative log-likelihoods and the count of observed entries."""
    z = (x - mean) * torch.exp(-log_std)
    nll = 0.5 * z * z + log_std + 0.5 * math.log(2 * math.pi)
    return (nll * mask).sum(), mask.sum()


class AnchoredDecoder(nn.Module):
    """Observation-anchored decoding: each channel is an Ornstein-Uhlenbeck process around a
    moving subject level, conditioned on the channel's own observations around the query.

    Per channel ``d`` (normalised units), with rate ``k``, process scale ``sp`` and level
    ``mu`` inferred from the anchor state ``z_a`` and the channel's history, the latent path
    moves the level: ``mu(t) = mu + dev(z(t))``, where ``z(t)`` follows the latent ODE with the
    doses as inputs. Then:

    * forward from the last value ``v_p`` seen at ``t_p``, ``age`` hours before the query:
      ``mu(t) + (v_p - mu(t_p)) r``, variance ``sp^2 (1 - r^2)``, ``r = exp(-k age)``;
    * conditioned also on the next value ``v_n`` ``gap`` hours after it (queries inside the
      history), the OU bridge, combined in precision form so nothing overflows;
    * a channel never seen: ``mu(t)``, variance ``sp^2``.

    So at the time of an observation the mean is the observation and the spread the learned
    measurement noise ``sn``; away from it the process relaxes toward the level the dynamics
    move, and a dose changes the forecast by the whole change of ``dev`` it causes (nothing
    gates it). The latent path also scales the spread by ``exp(tanh(.))``.

    ``smoothing_h`` (bandwidths in hours; None: off): each anchor value is moved toward the
    channel's kernel-smoothed values around it (:func:`models.anchoring.smoothed_values`) by
    learned per-channel weights ``smooth [D, J]`` that start at 0, so a noisy channel can be
    read through its neighbours instead of its single nearest observation.

    ``context_hidden`` (0: off): a forward and a backward GRU over the history
    (:class:`models.history_context.HistoryContext`) correct queries between observations
    from what every channel showed around them, scaled by the share of the bridge's variance
    the channel's own neighbours leave unexplained (0 at an observation). ``context_forecast``:
    queries after the history get a correction from the forward state at its end too, scaled
    the same way (``1 - r^2`` of the last value's hold on the query).
    """

    smoothing: Final[bool]
    has_context: Final[bool]
    smooth_tau: Tensor

    def __init__(self, latent_dim: int, n_measurements: int, hidden: int = 64, min_std: float = 1e-2,
                 rate_per_h: float = 0.1, dropout: float = 0.0, smoothing_h: Optional[List[float]] = None,
                 context_hidden: int = 0, context_forecast: bool = False):
        super().__init__()
        D = n_measurements
        self.n = D
        taus = [float(h) for h in smoothing_h] if smoothing_h else []
        if any(not h > 0 for h in taus):
            raise ValueError(f"smoothing bandwidths must be > 0 hours, got {taus}")
        self.smoothing = len(taus) > 0
        self.register_buffer("smooth_tau", torch.tensor(taus, dtype=torch.float32))
        self.smooth = nn.Parameter(torch.zeros(D, len(taus)))
        self.has_context = context_hidden > 0
        self.context = HistoryContext(D, context_hidden, hidden, context_forecast) if self.has_context else nn.Identity()
        # Dropout on the subject head's inputs while training (the anchor state and each channel's
        # history summary): the head fits a few thousand stays and overfits them first.
        self.dropout = dropout
        self.log_min_std = math.log(min_std)
        self.default_log_k = math.log(rate_per_h)
        self.log_k = nn.Parameter(torch.full([D], math.log(rate_per_h)))
        self.log_sp = nn.Parameter(torch.zeros(D))
        self.log_sn = nn.Parameter(torch.full([D], math.log(0.3)))
        # The level: weight ``w`` of the history mean, shrunk toward the population mean (0)
        # by n / (n + n0) for a channel seen n times.
        self.w = nn.Parameter(torch.ones(D))
        self.raw_n0 = nn.Parameter(torch.zeros(D))
        # Where prior_penalty pulls each channel's own parameters (set_channel_prior moves it).
        self.register_buffer("log_k_prior", torch.full([D], math.log(rate_per_h)))
        self.register_buffer("w_prior", torch.ones(D))
        self.register_buffer("raw_n0_prior", torch.zeros(D))
        # Subject-level adjustments from the anchor state and each channel's history summary
        # (mean, last value, log count, log staleness of the last value); zero at start.
        last_layer = nn.Linear(hidden, 3 * D)
        nn.init.zeros_(last_layer.weight)
        nn.init.zeros_(last_layer.bias)
        self.subject = nn.Sequential(nn.Linear(latent_dim + 4 * D, hidden), nn.Tanh(), last_layer)
        out = nn.Linear(hidden, 2 * D)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.deviation = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), out)

    @torch.jit.ignore
    def set_channel_prior(self, w: Tensor, k: Tensor, n0: float = 0.05) -> None:
        """Start each channel at, and pull it toward, a fitted decay to its level (history-mean
        weight ``w``, rate ``k`` per hour, ``[D]`` each; :mod:`twinode.models.channel_prior`),
        with little count shrinkage (``n0``): the twin begins as that forecaster."""
        raw_n0 = math.log(math.expm1(n0))
        with torch.no_grad():
            self.w.copy_(w)
            self.w_prior.copy_(w)
            self.log_k.copy_(torch.log(k))
            self.log_k_prior.copy_(torch.log(k))
            self.raw_n0.fill_(raw_n0)
            self.raw_n0_prior.fill_(raw_n0)

    @torch.jit.ignore
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Checkpoints from before the fitted prior hold no history-mean weight or prior: the
        # values they were trained with are this module's defaults (w = 1, the configured rate).
        D = self.n
        defaults = {"w": torch.ones(D), "w_prior": torch.ones(D), "raw_n0_prior": torch.zeros(D),
                    "log_k_prior": torch.full([D], self.default_log_k),
                    # and none from before the smoothing: its weights start at 0 (no smoothing).
                    "smooth": torch.zeros_like(self.smooth), "smooth_tau": self.smooth_tau.clone()}
        for name, value in defaults.items():
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @torch.jit.ignore
    def prior_penalty(self) -> Tensor:
        """Squared distance of each channel's own parameters from the prior (rate, history-mean
        weight and shrinkage at their starting values, no learned adjustment). Added to the loss
        with a small weight: a channel with many targets moves away as its data say, a rare one
        stays near the prior instead of fitting a handful of stays."""
        pen = ((self.log_k - self.log_k_prior).pow(2).sum() + (self.w - self.w_prior).pow(2).sum()
               + (self.raw_n0 - self.raw_n0_prior).pow(2).sum() + self.smooth.pow(2).sum())
        for layer in (self.subject[-1], self.deviation[-1]):
            pen = pen + layer.weight.pow(2).sum() + layer.bias.pow(2).sum()
        if isinstance(self.context, HistoryContext):  # its correction starts (and is held) at 0 too
            pen = pen + self.context.output_penalty()
        return pen

    def subject_params(self, z_a: Tensor, h_mean: Tensor, h_cnt: Tensor, last: Tensor,
                       staleness: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Level, rate and process scale ``[B, D]`` of each channel for this subject;
        ``staleness`` is how long before the anchor each channel was last seen (hours)."""
        seen = (h_cnt > 0).to(h_mean.dtype)
        feats = torch.cat([z_a, h_mean, last, torch.log1p(h_cnt), torch.log1p(staleness * seen)], dim=-1)
        feats = torch.nn.functional.dropout(feats, self.dropout, self.training)
        adj = self.subject(feats)
        d_level, d_logk, d_logsp = adj[:, : self.n], adj[:, self.n: 2 * self.n], adj[:, 2 * self.n:]
        n0 = torch.nn.functional.softplus(self.raw_n0) + 1e-3
        level = self.w * h_mean * seen * h_cnt / (h_cnt + n0) + d_level
        k = torch.exp((self.log_k + d_logk).clamp(-9.0, 3.0))
        sp = torch.exp((self.log_sp + d_logsp).clamp(-4.0, 3.0))
        return level, k, sp

    def anchor_kernels(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor, prev_idx: Tensor,
                       next_idx: Tensor) -> Tuple[Tensor, Tensor]:
        """The smoothed values ``[B, Q, D, J]`` at each query's previous and next anchor."""
        kern = smoothed_values(hist_t, hist_x, hist_m, hist_len, self.smooth_tau)  # [B, N, D, J]
        j = kern.shape[-1]
        prev = torch.gather(kern, 1, prev_idx.unsqueeze(-1).expand(-1, -1, -1, j))
        nxt = torch.gather(kern, 1, next_idx.unsqueeze(-1).expand(-1, -1, -1, j))
        return prev, nxt

    def context_correction(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor,
                           tq: Tensor) -> Optional[Tensor]:
        """The history context's correction ``[B, Q, D]`` (None without a context)."""
        if self.has_context:
            return self.context(hist_t, hist_x, hist_m, hist_len, tq)[0]
        return None

    def smoothed_anchor(self, val: Tensor, kernel: Tensor, ok: Tensor) -> Tensor:
        """An anchor value ``[B, Q, D]`` moved toward its kernel-smoothed values ``[B, Q, D, J]``."""
        return val + ((kernel - val.unsqueeze(-1)) * self.smooth).sum(-1) * ok

    def forward(self, zq: Tensor, zh: Tensor, level: Tensor, k: Tensor, sp: Tensor, prev_idx: Tensor,
                prev_val: Tensor, prev_age: Tensor, prev_ok: Tensor, next_idx: Tensor, next_val: Tensor,
                next_gap: Tensor, next_ok: Tensor, prev_kernel: Optional[Tensor] = None,
                next_kernel: Optional[Tensor] = None, correction: Optional[Tensor] = None,
                level_shift: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Mean and log-std ``[B, Q, D]`` from latent states ``zq [B, Q, L]`` at the queries and
        ``zh [B, N, L]`` at the history's times, and the per-query anchors (indices into the
        history, values, ages/gaps, whether they exist; with ``smoothing``, the smoothed values
        at the anchors ``[B, Q, D, J]``). ``level_shift [B, Q + N, D]`` (the doses' direct
        effect, :class:`models.dose_readout.DoseReadout`) moves the level at the queries and at
        the history's times, as the latent path's deviation does."""
        if self.smoothing and prev_kernel is not None and next_kernel is not None:
            prev_val = self.smoothed_anchor(prev_val, prev_kernel, prev_ok)
            next_val = self.smoothed_anchor(next_val, next_kernel, next_ok)
        out = self.deviation(zq)
        dev, scale = out[..., : self.n], out[..., self.n:]
        dev_h = self.deviation(zh)[..., : self.n]  # [B, N, D]: the level's move at each history time
        if level_shift is not None:
            q = dev.shape[1]
            dev = dev + level_shift[:, :q]
            dev_h = dev_h + level_shift[:, q:]
        mu_t = level.unsqueeze(1) + dev
        mu_p = level.unsqueeze(1) + torch.gather(dev_h, 1, prev_idx)
        mu_n = level.unsqueeze(1) + torch.gather(dev_h, 1, next_idx)
        kk, var_p = k.unsqueeze(1), (sp * sp).unsqueeze(1)
        eps = 1e-6
        r_f = torch.exp(-kk * prev_age) * prev_ok
        var_f = (var_p * (1.0 - r_f * r_f)).clamp(min=eps * var_p)
        mean_f = mu_t + (prev_val - mu_p) * r_f
        # Backward pseudo-observation of x(t) from the next value, in precision form.
        r_b = torch.exp(-kk * next_gap) * next_ok
        denom = (var_p * (1.0 - r_b * r_b)).clamp(min=eps * var_p)
        prec = 1.0 / var_f + r_b * r_b / denom
        mean = (mean_f / var_f + (r_b * r_b * mu_t + r_b * (next_val - mu_n)) / denom) / prec
        var_ou = 1.0 / prec
        if correction is not None:
            # Where the channel's own neighbours pin the value (var_ou -> 0) nothing moves.
            mean = mean + correction * (var_ou / var_p).clamp(max=1.0)
        sn = torch.exp(self.log_sn)
        var = (var_ou + sn * sn) * torch.exp(2.0 * torch.tanh(scale))
        log_std = 0.5 * torch.log(var)
        return mean, log_std.clamp(min=self.log_min_std)

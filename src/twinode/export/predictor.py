"""TwinPredictor: the trained PatientTwin wrapped with normalisation and input checks.

It is the module that gets scripted into ``twin.pt``: it takes and returns original units,
validates every argument, and never imputes a missing value silently (mask == 0 means
"not observed", and the value there is ignored). Methods (the export contract, docs/export.md):
``forecast``, ``sample``, ``risk``, ``forecast_batch``, and the two halves of a forecast,
``posterior`` (encode a history once) and ``decode`` (any number of dose plans and query
times from that posterior); for streaming, ``encode_start``/``encode_step`` (one
observation at a time) and ``decode_draws``. Every unit conversion happens here.
"""

from typing import Dict, Final, List, Optional, Tuple

import torch
from torch import Tensor, nn

from twinode.export.checks import MAX_SPAN_H, check_counts, check_doses, check_history, check_query, check_static, subject_prefix
from twinode.models.twin import PatientTwin


class TwinPredictor(nn.Module):
    n_measurements: Final[int]
    n_static: Final[int]
    n_interventions: Final[int]
    has_risk: Final[bool]
    max_span_h: Final[float]

    def __init__(self, twin: PatientTwin, meas_mean: List[float], meas_std: List[float], static_mean: List[float],
                 static_std: List[float], dose_scale: List[float], log1p_channels: List[bool],
                 valid_range: Optional[List[Optional[Tuple[float, float]]]] = None):
        super().__init__()
        self.twin = twin
        self.n_measurements = twin.n_measurements
        self.n_static = twin.n_static
        self.n_interventions = twin.n_interventions
        self.has_risk = bool(twin.has_risk)
        self.max_span_h = MAX_SPAN_H
        f = lambda v: torch.tensor(v, dtype=torch.float32)
        self.register_buffer("meas_mean", f(meas_mean))
        self.register_buffer("meas_std", f(meas_std))
        self.register_buffer("static_mean", f(static_mean))
        self.register_buffer("static_std", f(static_std))
        self.register_buffer("dose_scale", f(dose_scale))
        self.register_buffer("log1p", torch.tensor(log1p_channels, dtype=torch.bool))
        # Means and sampled values stay inside each channel's valid range (original units).
        ranges = valid_range if valid_range is not None else [None] * len(meas_mean)
        lo = [float(r[0]) if r is not None else -3.0e38 for r in ranges]
        hi = [float(r[1]) if r is not None else 3.0e38 for r in ranges]
        self.register_buffer("valid_lo", f(lo))
        self.register_buffer("valid_hi", f(hi))

    # ---- normalisation (original units <-> model units) ----

    def _norm_values(self, values: Tensor, mask: Tensor) -> Tuple[Tensor, Tensor]:
        m = (mask > 0).to(torch.float32)
        v = torch.where(m > 0, values, torch.zeros_like(values))
        v = torch.where(self.log1p, torch.log1p(v.clamp(min=0.0)), v)
        return (v - self.meas_mean) / self.meas_std * m, m

    def _norm_static(self, static: Tensor) -> Tuple[Tensor, Tensor]:
        known = torch.isfinite(static).to(torch.float32)
        s = torch.where(known > 0, (static - self.static_mean) / self.static_std, torch.zeros_like(static))
        return s, known

    def _norm_doses(self, doses: Tensor) -> Tensor:
        """``[..., M, 4]`` -> amounts in training scale; no doses (or a twin without
        intervention channels, which ignores them) become one zero-amount row."""
        if doses.shape[-2] == 0 or self.n_interventions == 0:
            shape = list(doses.shape)
            shape[-2] = 1
            return torch.zeros(shape, dtype=torch.float32, device=doses.device)
        d = doses.clone()
        d[..., 2] = d[..., 2] / self.dose_scale[d[..., 1].long()]
        return d

    def _to_original(self, mean: Tensor, log_std: Tensor) -> Tuple[Tensor, Tensor]:
        y = mean * self.meas_std + self.meas_mean
        sd = torch.exp(log_std) * self.meas_std
        # Back-transform inside the valid range, so expm1 cannot explode. log1p channels: the
        # mean of the transformed Gaussian, back-transformed (the median in original units: the
        # lognormal mean inflates with the spread and forecast worse on held-out data), and the
        # delta-method std.
        y = torch.minimum(torch.maximum(y, self._transformed(self.valid_lo)), self._transformed(self.valid_hi))
        # where() on the input too: expm1/exp of a large linear channel would give inf, and inf x 0
        # a NaN gradient (plans are optimised through this method).
        y_log = torch.where(self.log1p, y, torch.zeros_like(y))
        mean_o = torch.where(self.log1p, torch.expm1(y_log), y)
        sd_o = torch.where(self.log1p, torch.exp(y_log) * sd, sd)
        return self._clip(mean_o), sd_o

    def _transformed(self, bound: Tensor) -> Tensor:
        """A bound in original units on the model's transformed scale (log1p where it applies)."""
        return torch.where(self.log1p, torch.log1p(bound.clamp(min=0.0, max=1.0e30)), bound)

    def _clip(self, x: Tensor) -> Tensor:
        return torch.minimum(torch.maximum(x, self.valid_lo), self.valid_hi)

    # ---- one subject ----

    def _check(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor, prefix: str):
        check_history(times, values, mask, self.n_measurements, prefix)
        check_static(static, self.n_static, prefix)
        check_doses(doses, self.n_interventions, prefix)

    def _posterior(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor) -> Dict[str, Tensor]:
        """q(z | history) at the anchor (last observed time; 0 without history) and what decoding
        from it needs: ``z_mean``, ``z_log_std``, ``anchor``, ``s_emb`` and the normalised history
        ``hist_t``, ``hist_x``, ``hist_m``, ``hist_len`` (batch of one). ``doses`` (original
        units) are read by a twin whose encoder takes them; doses after the anchor change nothing."""
        s, known = self._norm_static(static)
        s_emb = self.twin.embed_static(s.unsqueeze(0), known.unsqueeze(0))
        if times.shape[0] == 0:  # no history: the encoder state comes from the statics alone
            t = torch.zeros(1, 1, dtype=torch.float32, device=times.device)
            x = torch.zeros(1, 1, self.n_measurements, dtype=torch.float32, device=times.device)
            m = torch.zeros_like(x)
            length = torch.zeros(1, dtype=torch.long, device=times.device)
            anchor = torch.zeros(1, dtype=torch.float32, device=times.device)
        else:
            x, m = self._norm_values(values, mask)
            t, x, m = times.unsqueeze(0), x.unsqueeze(0), m.unsqueeze(0)
            length = torch.full([1], times.shape[0], dtype=torch.long, device=times.device)
            anchor = times[-1:].clone()
        z_mean, z_log_std = self.twin.encode(t, x, m, length, s_emb, self._norm_doses(doses).unsqueeze(0))
        return {"z_mean": z_mean, "z_log_std": z_log_std, "anchor": anchor, "s_emb": s_emb,
                "hist_t": t, "hist_x": x, "hist_m": m, "hist_len": length}

    def _decode(self, post: Dict[str, Tensor], z: Tensor, doses: Tensor, query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """Mean and log-std ``[K, Q, D]`` (model units) for K latent draws ``z [K, L]`` of one posterior."""
        k = z.shape[0]
        d = self._norm_doses(doses).unsqueeze(0).expand(k, -1, 4)
        tq = query_times.unsqueeze(0).expand(k, query_times.shape[0])
        n = post["hist_t"].shape[1]
        return self.twin.decode_at(z, post["anchor"].expand(k), tq, d, post["s_emb"].expand(k, -1),
                                   post["hist_t"].expand(k, n), post["hist_x"].expand(k, n, self.n_measurements),
                                   post["hist_m"].expand(k, n, self.n_measurements), post["hist_len"].expand(k))

    @torch.jit.export
    def posterior(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor,
                  doses: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Encode one history (original units, checked as in ``forecast``) once; pass the result to
        ``decode`` for any number of dose plans and query times. ``doses``: those already given
        (rows as in ``forecast``; none by default), which a twin trained with
        ``encoder_doses`` reads with the history; rows after the last observation change nothing."""
        given = doses if doses is not None else torch.zeros(0, 4, dtype=torch.float32, device=times.device)
        self._check(times, values, mask, static, given, "")
        return self._posterior(times, values, mask, static, given)

    @torch.jit.export
    def decode(self, post: Dict[str, Tensor], doses: Tensor, query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """Predictive mean and std ``[Q, D]`` (original units) from a ``posterior`` under ``doses``."""
        check_doses(doses, self.n_interventions, "")
        anchor_h = float(post["anchor"][0].item()) if int(post["hist_len"][0].item()) > 0 else 0.0
        check_query(query_times, anchor_h, self.max_span_h, "")
        if query_times.shape[0] == 0:
            empty = torch.zeros(0, self.n_measurements, dtype=torch.float32, device=query_times.device)
            return empty, empty.clone()
        mean, log_std = self._decode(post, post["z_mean"], doses, query_times)
        return self._to_original(mean[0], log_std[0])

    @torch.jit.export
    def forecast(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor,
                 query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """Predictive mean and std ``[Q, D]`` in original units at ``query_times`` (hours)."""
        self._check(times, values, mask, static, doses, "")
        anchor_h = float(times[-1].item()) if times.shape[0] > 0 else 0.0
        check_query(query_times, anchor_h, self.max_span_h, "")
        post = self._posterior(times, values, mask, static, doses)
        if query_times.shape[0] == 0:
            empty = torch.zeros(0, self.n_measurements, dtype=torch.float32, device=times.device)
            return empty, empty.clone()
        mean, log_std = self._decode(post, post["z_mean"], doses, query_times)
        return self._to_original(mean[0], log_std[0])

    @torch.jit.export
    def sample(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor, query_times: Tensor,
               num_samples: int, seed: int) -> Tensor:
        """Trajectories ``[num_samples, Q, D]`` (original units): z ~ q(z | history), then the
        decoder's noise. The same seed gives the same samples."""
        self._check(times, values, mask, static, doses, "")
        anchor_h = float(times[-1].item()) if times.shape[0] > 0 else 0.0
        check_query(query_times, anchor_h, self.max_span_h, "")
        if num_samples < 1:
            raise ValueError("num_samples: expected an integer >= 1, got " + str(num_samples))
        post = self._posterior(times, values, mask, static, doses)
        if query_times.shape[0] == 0:
            return torch.zeros(num_samples, 0, self.n_measurements, dtype=torch.float32, device=times.device)
        gen = torch.Generator()
        gen.manual_seed(seed)
        z_mean, z_log_std = post["z_mean"], post["z_log_std"]
        eps = torch.randn([num_samples, z_mean.shape[1]], generator=gen).to(z_mean.device)
        if self.twin.variational:
            mean, log_std = self._decode(post, z_mean + torch.exp(z_log_std) * eps, doses, query_times)
        else:  # every draw shares the posterior mean: decode once, draw only the decoder's noise
            mean, log_std = self._decode(post, z_mean, doses, query_times)
            mean = mean.expand(num_samples, -1, -1)
            log_std = log_std.expand(num_samples, -1, -1)
        noise = torch.randn(mean.shape, generator=gen).to(mean.device)
        y = (mean + torch.exp(log_std) * noise) * self.meas_std + self.meas_mean
        y = torch.minimum(torch.maximum(y, self._transformed(self.valid_lo)), self._transformed(self.valid_hi))
        return self._clip(torch.where(self.log1p, torch.expm1(torch.where(self.log1p, y, torch.zeros_like(y))), y))

    @torch.jit.export
    def risk(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor) -> Tensor:
        """Probability of the outcome (a 0-d tensor) from the posterior mean at the anchor."""
        if not self.has_risk:
            raise RuntimeError("risk: this twin has no risk head (it was trained without an outcome feature "
                               "or with model.twin.risk_head=false); see metadata 'methods'")
        self._check(times, values, mask, static, doses, "")
        p = self._posterior(times, values, mask, static, doses)
        logit = self.twin.risk_logit(p["z_mean"], p["s_emb"], p["hist_t"], p["hist_x"], p["hist_m"], p["hist_len"])
        return torch.sigmoid(logit)[0]

    # ---- streaming: one observation at a time (gru_delta encoder, latent decoder) ----

    @torch.jit.export
    def encode_start(self, static: Tensor) -> Dict[str, Tensor]:
        """The streaming state before any observation: ``s_emb``, the encoder state ``h`` and the
        last observation's time ``t_last`` (``-1`` for none). Needs the gru_delta encoder."""
        check_static(static, self.n_static, "")
        s, known = self._norm_static(static)
        s_emb = self.twin.embed_static(s.unsqueeze(0), known.unsqueeze(0))
        h = self.twin.encoder.init_state(s_emb)
        return {"s_emb": s_emb, "h": h, "t_last": torch.full([1], -1.0, dtype=torch.float32, device=static.device)}

    @torch.jit.export
    def encode_step(self, state: Dict[str, Tensor], time: Tensor, values: Tensor, mask: Tensor) -> Dict[str, Tensor]:
        """The state after one observation at ``time`` (0-d, hours, not before the last one):
        ``values [D]`` in original units where ``mask [D]`` is 1. Equal to encoding the whole
        history with ``posterior``."""
        if self.twin.encoder_doses:
            raise RuntimeError("encode_step: this twin's encoder reads the doses with each observation; "
                               "encode the whole history with posterior or forecast instead")
        check_history(time.reshape(1), values.reshape(1, -1), mask.reshape(1, -1), self.n_measurements, "")
        t_last = state["t_last"]
        if bool(t_last[0] >= 0.0) and bool(time.reshape(1)[0] < t_last[0]):
            raise ValueError("encode_step: time " + str(float(time)) + " is before the last observation at "
                             + str(float(t_last[0])) + "; steps must come in time order")
        x, m = self._norm_values(values.reshape(1, -1), mask.reshape(1, -1))
        gap = torch.where(t_last >= 0.0, time.reshape(1) - t_last, torch.zeros_like(t_last)).clamp(min=0.0)
        inp = torch.cat([x * m, m, torch.log1p(gap).reshape(1, 1)], dim=-1)
        h = self.twin.encoder.step(inp, state["h"])
        return {"s_emb": state["s_emb"], "h": h, "t_last": time.reshape(1).to(torch.float32)}

    @torch.jit.export
    def decode_draws(self, state: Dict[str, Tensor], eps: Tensor, doses: Tensor,
                     query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """Per-draw predictive mean and std ``[K, Q, D]`` (original units) from a streaming state:
        draw ``k`` decodes ``z = mean + std * eps[k]`` (the posterior mean where the twin is not
        variational). For twins whose decoder reads the history (``anchored``) use ``forecast``."""
        if self.twin.anchored:
            raise RuntimeError("decode_draws: this twin decodes from its history; use forecast or sample")
        check_doses(doses, self.n_interventions, "")
        anchor_h = float(state["t_last"][0].item()) if bool(state["t_last"][0] >= 0.0) else 0.0
        check_query(query_times, anchor_h, self.max_span_h, "")
        z_mean, z_log_std = self.twin.encoder.read_out(state["h"])
        k = eps.shape[0]
        # Without a variational posterior every draw is the mean: decode it once.
        kz = k if self.twin.variational else 1
        z = z_mean + torch.exp(z_log_std) * eps if self.twin.variational else z_mean
        d = self._norm_doses(doses).unsqueeze(0).expand(kz, -1, 4)
        anchor = torch.full([kz], anchor_h, dtype=torch.float32, device=eps.device)
        mean, log_std = self.twin.decode_at(z, anchor, query_times.unsqueeze(0).expand(kz, query_times.shape[0]), d,
                                            state["s_emb"].expand(kz, -1))
        mean_o, sd_o = self._to_original(mean, log_std)
        return mean_o.expand(k, -1, -1).contiguous(), sd_o.expand(k, -1, -1).contiguous()

    # ---- a batch of subjects ----

    @torch.jit.export
    def forecast_batch(self, times: Tensor, values: Tensor, mask: Tensor, lengths: Tensor, static: Tensor,
                       doses: Tensor, n_doses: Tensor, query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """``forecast`` for B subjects at once: times ``[B, N]``, values/mask ``[B, N, D]``,
        lengths ``[B]`` (entries past a subject's length are ignored), static ``[B, S]``,
        doses ``[B, M, 4]`` with n_doses ``[B]``, query_times ``[B, Q]`` -> mean, std ``[B, Q, D]``."""
        if times.dim() != 2:
            raise ValueError("times: expected shape [B, N] of hours, got " + str(times.shape))
        bsz, n = times.shape[0], times.shape[1]
        if values.dim() != 3 or values.shape[0] != bsz or values.shape[1] != n or values.shape[2] != self.n_measurements:
            raise ValueError("values: expected shape [B, N, D] = [" + str(bsz) + ", " + str(n) + ", " + str(self.n_measurements) + "], got " + str(values.shape))
        if mask.shape != values.shape:
            raise ValueError("mask: expected the shape of values " + str(values.shape) + ", got " + str(mask.shape))
        if static.dim() != 2 or static.shape[0] != bsz:
            raise ValueError("static: expected shape [B, S] = [" + str(bsz) + ", " + str(self.n_static) + "], got " + str(static.shape))
        if doses.dim() != 3 or doses.shape[0] != bsz:
            raise ValueError("doses: expected shape [B, M, 4], got " + str(doses.shape))
        if query_times.dim() != 2 or query_times.shape[0] != bsz:
            raise ValueError("query_times: expected shape [B, Q] of hours, got " + str(query_times.shape))
        check_counts(lengths, bsz, n, "lengths")
        check_counts(n_doses, bsz, doses.shape[1], "n_doses")
        anchor = torch.zeros(bsz, dtype=torch.float32, device=times.device)
        for b in range(bsz):
            k, kd = int(lengths[b].item()), int(n_doses[b].item())
            p = subject_prefix(b)
            self._check(times[b, :k], values[b, :k], mask[b, :k], static[b], doses[b, :kd], p)
            if k > 0:
                anchor[b] = times[b, k - 1]
            check_query(query_times[b], float(anchor[b].item()), self.max_span_h, p)
        live = torch.arange(n, device=times.device).unsqueeze(0) < lengths.unsqueeze(1)
        x, m = self._norm_values(values, mask * live.unsqueeze(-1).to(mask.dtype))
        # Padded entries sit at the subject's last time, so no gap is negative or huge.
        t = torch.where(live, times, anchor.unsqueeze(1))
        if n == 0:
            t = torch.zeros(bsz, 1, dtype=torch.float32, device=times.device)
            x = torch.zeros(bsz, 1, self.n_measurements, dtype=torch.float32, device=times.device)
            m = torch.zeros_like(x)
        s, known = self._norm_static(static)
        s_emb = self.twin.embed_static(s, known)
        if query_times.shape[1] == 0:
            empty = torch.zeros(bsz, 0, self.n_measurements, dtype=torch.float32, device=times.device)
            return empty, empty.clone()
        # Rows past a subject's n_doses are padding: zero them (channel 0, no amount) first.
        used = torch.arange(doses.shape[1], device=doses.device).unsqueeze(0) < n_doses.unsqueeze(1)
        d = self._norm_doses(torch.where(used.unsqueeze(-1), doses, torch.zeros_like(doses)))
        z, _ = self.twin.encode(t, x, m, lengths.long(), s_emb, d)
        mean, log_std = self.twin.decode_at(z, anchor, query_times, d, s_emb, t, x, m, lengths.long())
        return self._to_original(mean, log_std)

    def forward(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor,
                query_times: Tensor) -> Tuple[Tensor, Tensor]:
        return self.forecast(times, values, mask, static, doses, query_times)

"""TwinPredictor: the trained PatientTwin wrapped with normalisation and input checks.

It is the module that gets scripted into ``twin.pt``: it takes and returns original units,
validates every argument, and never imputes a missing value silently (mask == 0 means
"not observed", and the value there is ignored).
"""

from typing import Final, List, Tuple

import torch
from torch import Tensor, nn

from twinode.models.twin import PatientTwin


class TwinPredictor(nn.Module):
    n_measurements: Final[int]
    n_static: Final[int]
    n_interventions: Final[int]

    def __init__(self, twin: PatientTwin, meas_mean: List[float], meas_std: List[float], static_mean: List[float],
                 static_std: List[float], dose_scale: List[float], log1p_channels: List[bool]):
        super().__init__()
        self.twin = twin
        self.n_measurements = twin.n_measurements
        self.n_static = twin.n_static
        self.n_interventions = twin.n_interventions
        f = lambda v: torch.tensor(v, dtype=torch.float32)
        self.register_buffer("meas_mean", f(meas_mean))
        self.register_buffer("meas_std", f(meas_std))
        self.register_buffer("static_mean", f(static_mean))
        self.register_buffer("static_std", f(static_std))
        self.register_buffer("dose_scale", f(dose_scale))
        self.register_buffer("log1p", torch.tensor(log1p_channels, dtype=torch.bool))

    def _check(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor, query_times: Tensor):
        n = times.shape[0] if times.dim() == 1 else -1
        if times.dim() != 1:
            raise ValueError("times: expected a 1-D float tensor [N] of hours, got " + str(times.dim()) + " dimensions")
        if values.dim() != 2 or values.shape[0] != n or values.shape[1] != self.n_measurements:
            raise ValueError("values: expected shape [N, D] = [" + str(n) + ", " + str(self.n_measurements) + "], got " + str(list(values.shape)))
        if mask.shape != values.shape:
            raise ValueError("mask: expected the shape of values " + str(list(values.shape)) + ", got " + str(list(mask.shape)))
        if static.dim() != 1 or static.shape[0] != self.n_static:
            raise ValueError("static: expected shape [S] = [" + str(self.n_static) + "], got " + str(list(static.shape)))
        if doses.dim() != 2 or doses.shape[1] != 4:
            raise ValueError("doses: expected shape [M, 4] with rows (time_h, channel, amount, duration_h), got " + str(list(doses.shape)))
        if query_times.dim() != 1:
            raise ValueError("query_times: expected a 1-D tensor [Q] of hours, got shape " + str(list(query_times.shape)))
        if not bool(torch.isfinite(times).all()):
            raise ValueError("times: contains NaN or inf")
        if n > 1 and bool((times[1:] < times[:-1]).any()):
            raise ValueError("times: must be sorted ascending (hours)")
        observed = mask > 0
        if bool((observed & ~torch.isfinite(values)).any()):
            raise ValueError("values: NaN or inf where mask == 1; set mask to 0 for missing entries")
        if not bool(torch.isfinite(query_times).all()):
            raise ValueError("query_times: contains NaN or inf")
        if doses.shape[0] > 0:
            if not bool(torch.isfinite(doses).all()):
                raise ValueError("doses: contains NaN or inf")
            ch = doses[:, 1]
            if bool(((ch < 0) | (ch >= self.n_interventions) | (ch != torch.floor(ch))).any()):
                raise ValueError("doses: channel index out of range; expected integers in [0, " + str(self.n_interventions) + ")")
            if bool((doses[:, 3] < 0).any()):
                raise ValueError("doses: duration_h must be >= 0 (0 = bolus)")

    def _prepare(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor):
        m = (mask > 0).to(torch.float32)
        v = torch.where(m > 0, values, torch.zeros_like(values))
        v = torch.where(self.log1p.unsqueeze(0), torch.log1p(v.clamp(min=0.0)), v)
        x = (v - self.meas_mean) / self.meas_std * m
        known = torch.isfinite(static).to(torch.float32)
        s = torch.where(known > 0, (static - self.static_mean) / self.static_std, torch.zeros_like(static))
        d = doses.clone()
        if d.shape[0] > 0:
            d[:, 2] = d[:, 2] / self.dose_scale[d[:, 1].long()]
        else:
            d = torch.zeros(1, 4, dtype=torch.float32, device=doses.device)
        if times.shape[0] == 0:  # no history: the encoder state comes from the statics alone
            t = torch.zeros(1, 1, dtype=torch.float32, device=times.device)
            x = torch.zeros(1, 1, self.n_measurements, dtype=torch.float32, device=times.device)
            m = torch.zeros_like(x)
            length = torch.zeros(1, dtype=torch.long, device=times.device)
            anchor = torch.zeros(1, dtype=torch.float32, device=times.device)
        else:
            t = times.unsqueeze(0)
            x = x.unsqueeze(0)
            m = m.unsqueeze(0)
            length = torch.full([1], times.shape[0], dtype=torch.long, device=times.device)
            anchor = times[-1:].clone()
        return t, x, m, length, anchor, s.unsqueeze(0), known.unsqueeze(0), d.unsqueeze(0)

    def _to_original(self, mean: Tensor, log_std: Tensor) -> Tuple[Tensor, Tensor]:
        y = mean * self.meas_std + self.meas_mean
        sd = torch.exp(log_std) * self.meas_std
        # log1p channels: back-transform the mean, and the std by the delta method.
        mean_o = torch.where(self.log1p, torch.expm1(y), y)
        sd_o = torch.where(self.log1p, torch.exp(y) * sd, sd)
        return mean_o, sd_o

    @torch.jit.export
    def forecast(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor,
                 query_times: Tensor) -> Tuple[Tensor, Tensor]:
        """Predictive mean and std ``[Q, D]`` in original units at ``query_times`` (hours)."""
        self._check(times, values, mask, static, doses, query_times)
        t, x, m, length, anchor, s, known, d = self._prepare(times, values, mask, static, doses)
        s_emb = self.twin.embed_static(s, known)
        z, _ = self.twin.encode(t, x, m, length, s_emb)
        if query_times.shape[0] == 0:
            empty = torch.zeros(0, self.n_measurements, dtype=torch.float32, device=times.device)
            return empty, empty.clone()
        mean, log_std = self.twin.decode_at(z, anchor, query_times.unsqueeze(0), d, s_emb)
        return self._to_original(mean[0], log_std[0])

    def forward(self, times: Tensor, values: Tensor, mask: Tensor, static: Tensor, doses: Tensor,
                query_times: Tensor) -> Tuple[Tensor, Tensor]:
        return self.forecast(times, values, mask, static, doses, query_times)

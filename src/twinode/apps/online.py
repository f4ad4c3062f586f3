"""One patient's twin state, updated observation by observation.

``OnlineTwin`` keeps the history (times, values, mask, statics, doses) and gives the twin's
predictive distribution at a future time from the history so far. Where the exported
encoder is the forward GRU with time gaps (``GRUDeltaEncoder``), each new observation is one
step of the exported twin's ``encode_step`` (decoded with ``decode_draws``): O(1) per event,
and equal to re-encoding the whole history (a test checks it). The twin does every unit
conversion; this class only keeps the history and the streaming state. Other encoders (the
backward ODE-RNN reads the history from its end), and twins whose decoder reads the history
itself (``anchored``), are re-encoded through the contract's ``forecast``/``sample``:
O(history) per event.

Predictive distribution: ``num_samples`` latent draws z ~ q(z | history) (fixed draws,
common to all events), each decoded to a Gaussian; the mixture's mean and standard
deviation (latent spread plus decoder noise). ``num_samples=0`` uses the posterior mean
alone, which is exactly ``forecast``.

Inputs follow the training rules (:mod:`twinode.data.rules`, with the FeatureSpec from the
twin's metadata): same-time readings of a channel are combined by its ``duplicates`` policy,
and doses become contract rows by ``finish_doses`` (rates to totals; an infusion without an
end runs until the next start on its channel, else to ``max(window_hours, last query)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from twinode.data.rules import combine, finish_doses, spec_from_meta

INCREMENTAL_ENCODERS = ("GRUDeltaEncoder",)


class OnlineTwin:
    def __init__(self, twin, meta: dict, num_samples: int = 32, seed: int = 0, incremental: bool | None = None):
        self.twin, self.meta = twin, meta
        self.spec = spec_from_meta(meta)
        self.D, self.S = len(meta["measurements"]), len(meta["statics"])
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        enc = twin.twin.encoder
        # An anchored twin decodes from the history itself: it is re-encoded through the contract.
        can = ("encode_step" in meta.get("methods", []) and hasattr(twin, "encode_step")
               and getattr(enc, "original_name", "") in INCREMENTAL_ENCODERS)
        self.incremental = can if incremental is None else bool(incremental and can)
        self.static = torch.full((self.S,), float("nan"))
        self.times: list[float] = []
        self.rows: list[list[float]] = []  # values, NaN = not observed
        self._same: dict[int, list[float]] = {}  # channel -> raw readings at the last time (duplicate rule)
        self.doses: list[list] = []  # [time, channel, event value, duration_h or None (no known end)]
        gen = torch.Generator().manual_seed(self.seed)
        self.eps = torch.randn(max(self.num_samples, 1), twin.twin.latent_dim, generator=gen)
        self._reset_encoder()

    # ---- inputs ----

    def add_event(self, ev) -> None:
        """One :class:`~twinode.apps.stream.Event`, routed by its role."""
        if ev.role == "static":
            self.set_static(ev.index, ev.value)
        elif ev.role == "intervention":
            self.add_dose(ev.time, ev.index, ev.value, ev.duration_h)
        elif ev.role == "end":
            self.end_infusion(ev.time, ev.index)
        else:
            self.add_measurement(ev.time, ev.index, ev.value)

    def set_static(self, i: int, value: float) -> None:
        self.static[i] = value
        self._reset_encoder()  # the static embedding seeds the encoder state: replay the history
        for k in range(len(self.times)):
            self._step(k)

    def add_dose(self, time_h: float, channel: int, amount: float, duration_h: float | None) -> None:
        """An intervention event: ``amount`` is the event's value (a rate for ``value: rate`` codes)."""
        self.doses.append([time_h, channel, amount, duration_h])

    def end_infusion(self, time_h: float, channel: int) -> None:
        """An end event: every infusion of ``channel`` started before it without a known end ends here."""
        for d in self.doses:
            if d[1] == channel and d[3] is None and d[0] < time_h:
                d[3] = time_h - d[0]

    def add_measurement(self, time_h: float, channel: int, value: float) -> None:
        if self.times and time_h == self.times[-1]:
            # Same time: one row; the channel's readings combine by its duplicates policy.
            same = self._same.setdefault(channel, [])
            same.append(value)
            self.rows[-1][channel] = combine(same, self.spec.measurements[channel].duplicates)
            self.state = self.state_before  # re-step the row from the state before it
            self._step(len(self.times) - 1)
            return
        self._same = {channel: [value]}
        self.times.append(time_h)
        row = [math.nan] * self.D
        row[channel] = value
        self.rows.append(row)
        self._step(len(self.times) - 1)

    # ---- tensors of the contract ----

    def dose_tensor(self, until_h: float, extra: Tensor | None = None) -> Tensor:
        """Contract doses ``[M, 4]`` (open rate infusions run to ``max(window_hours, until_h)``);
        ``extra`` (a plan, contract rows) appended."""
        a = np.array([[t, c, v, math.nan if d is None else d] for t, c, v, d in self.doses], np.float64).reshape(-1, 4)
        rows = finish_doses(np.zeros(len(a), np.int64), a[:, 0], a[:, 1].astype(np.int64), a[:, 2], a[:, 3],
                            self.spec.interventions, max(self.spec.window_hours, float(until_h)))
        out = torch.from_numpy(rows).reshape(-1, 4)
        if extra is not None and extra.shape[0]:
            out = torch.cat([out, extra.to(torch.float32)])
            out = out[torch.argsort(out[:, 0], stable=True)]
        return out

    def history(self) -> tuple[Tensor, Tensor, Tensor]:
        v = torch.tensor(self.rows, dtype=torch.float32).reshape(-1, self.D)
        mask = torch.isfinite(v).to(torch.float32)
        return torch.tensor(self.times, dtype=torch.float32), torch.nan_to_num(v, nan=0.0), mask

    @property
    def anchor(self) -> float:
        return self.times[-1] if self.times else 0.0

    # ---- the incremental encoder (the exported twin's encode_start / encode_step) ----

    def _reset_encoder(self) -> None:
        if self.incremental:
            with torch.inference_mode():
                self.state = self.twin.encode_start(self.static)
            self.state_before = self.state

    @property
    def h(self) -> Tensor:
        """The encoder's state after the last observation (incremental twins)."""
        return self.state["h"]

    def _step(self, k: int) -> None:
        if not self.incremental:
            return
        row = torch.tensor(self.rows[k], dtype=torch.float32)
        mask = torch.isfinite(row).to(torch.float32)
        with torch.inference_mode():
            self.state_before = self.state
            self.state = self.twin.encode_step(self.state, torch.tensor(float(self.times[k])),
                                               torch.nan_to_num(row, nan=0.0), mask)

    # ---- predictions ----

    def predictive(self, query_h: Tensor, plan: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Predictive mean and std ``[Q, D]`` (original units) at ``query_h`` given the history so far."""
        query_h = query_h.to(torch.float32).reshape(-1)
        doses = self.dose_tensor(float(query_h.max()) if query_h.numel() else self.anchor, plan)
        if not self.incremental:
            return self._predictive_full(query_h, doses)
        eps = self.eps if self.num_samples > 0 else torch.zeros(1, self.eps.shape[1])
        with torch.inference_mode():
            mean, std = self.twin.decode_draws(self.state, eps, doses, query_h)
        return _mixture(mean, std)

    def _predictive_full(self, query_h: Tensor, doses: Tensor) -> tuple[Tensor, Tensor]:
        t, v, mask = self.history()
        with torch.inference_mode():
            if self.num_samples < 2:
                return self.twin.forecast(t, v, mask, self.static, doses, query_h)
            s = self.twin.sample(t, v, mask, self.static, doses, query_h, self.num_samples, self.seed)
        return s.mean(0), s.std(0)


def _mixture(mean: Tensor, std: Tensor) -> tuple[Tensor, Tensor]:
    """Per-draw Gaussians ``[K, Q, D]`` (original units) -> the mixture's mean and std."""
    var = (std ** 2).mean(0) + (mean.var(0, unbiased=False) if mean.shape[0] > 1 else 0.0)
    return mean.mean(0), var.sqrt()

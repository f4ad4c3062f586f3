"""History encoders: per-subject sequences of (values, masks, time gaps) -> q(z at the anchor).

Every encoder steps all subjects over their own observations in lockstep (no union of
times across the batch); padded steps (index >= length) leave the state alone. The
posterior always describes the latent state at the anchor, the subject's last history
time, so ``PatientTwin.decode_at`` and the exported predictor see one convention.
"""


from typing import Final, Optional

import torch
from torch import Tensor, nn

from twinode.errors import ConfigError


class GRUDeltaEncoder(nn.Module):
    """GRU over observations with the log time gap as an input, forward in time: its final
    state sits at the last observation, the anchor.

    The whole padded sequence goes through one fused ``nn.GRU`` call and each subject's state
    is read at its own last observation: a GRU is causal, so the padding after a subject's
    length never reaches that state, and no per-step Python loop or masking is needed.

    ``n_inputs`` extra per-observation inputs ``u [B, N, n_inputs]`` (the twin passes each
    dose channel's effect at the observation's time) join the values, so the state can
    carry how this subject responded to earlier doses.
    """

    n_inputs: Final[int]

    def __init__(self, n_measurements: int, static_dim: int, latent_dim: int, hidden: int = 64, n_inputs: int = 0):
        super().__init__()
        self.n_inputs = n_inputs
        self.gru = nn.GRU(2 * n_measurements + 1 + n_inputs, hidden, batch_first=True)
        self.init_h = nn.Linear(static_dim, hidden)
        self.to_q = nn.Linear(hidden, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, t: Tensor, x: Tensor, m: Tensor, length: Tensor, s: Tensor,
                u: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        h0 = torch.tanh(self.init_h(s))
        # Gap to the previous observation (0 for the first one).
        gap = (t - torch.cat([t[:, :1], t[:, :-1]], dim=1)).clamp(min=0.0)
        parts = [x * m, m, torch.log1p(gap).unsqueeze(-1)]
        if self.n_inputs > 0:
            parts.append(u if u is not None else torch.zeros(x.shape[0], x.shape[1], self.n_inputs, dtype=x.dtype,
                                                             device=x.device))
        inp = torch.cat(parts, dim=-1)
        out, _ = self.gru(inp, h0.unsqueeze(0))
        last = (length - 1).clamp(min=0).view(-1, 1, 1).expand(out.shape[0], 1, out.shape[2])
        h = torch.where((length > 0).unsqueeze(-1), out.gather(1, last).squeeze(1), h0)
        return self.read_out(h)

    @torch.jit.export
    def init_state(self, s: Tensor) -> Tensor:
        """The state ``[B, H]`` before any observation, from the static embedding ``s``."""
        return torch.tanh(self.init_h(s))

    @torch.jit.export
    def step(self, inp: Tensor, h: Tensor) -> Tensor:
        """One observation's update ``[B, 2D+1]`` of the state ``h [B, H]`` (streaming use)."""
        _, h_new = self.gru(inp.unsqueeze(1), h.unsqueeze(0))
        return h_new.squeeze(0)

    @torch.jit.export
    def read_out(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-std ``[B, L]`` from the state at the anchor."""
        q = self.to_q(h)
        mean, log_std = q[:, : self.latent_dim], q[:, self.latent_dim:]
        return mean, log_std.clamp(-8.0, 4.0)


class HiddenODE(nn.Module):
    """dh/dt = tanh-MLP(h): the encoder's own dynamics between observations. Bounded so a
    few fixed steps over a long gap stay tame."""

    def __init__(self, hidden: int, width: int):
        super().__init__()
        out = nn.Linear(width, hidden)
        nn.init.normal_(out.weight, std=0.1)
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(nn.Linear(hidden, width), nn.Tanh(), out, nn.Tanh())

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class ODERNNEncoder(nn.Module):
    """ODE-RNN (Rubanova et al. 2019): between observations the hidden state follows a small
    ODE over the gap (``ode_steps`` fixed steps of ``method``, each subject over its own gap),
    at each observation a GRU update.

    ``direction="backward"`` (the Latent ODE recognition network) starts at the anchor and
    runs back to the first observation; ``"forward"`` runs from the first observation to the
    anchor. Either way the final hidden state summarises the whole history and is read out
    as the posterior of the latent state *at the anchor*; the backward run also sees how far
    it travelled (anchor - first time), so the read-out knows where the summary sits.
    Gaps are measured in units of ``time_scale_h`` hours (the paper scales 48 h to 1).
    """

    backward: Final[bool]
    n_inputs: Final[int]
    ode_steps: Final[int]
    rk4: Final[bool]
    time_scale_h: Final[float]

    def __init__(self, n_measurements: int, static_dim: int, latent_dim: int, hidden: int = 64,
                 direction: str = "backward", ode_steps: int = 1, method: str = "rk4", time_scale_h: float = 24.0,
                 n_inputs: int = 0):
        super().__init__()
        if direction not in ("backward", "forward"):
            raise ConfigError("model.twin.encoder_direction", direction, ("backward", "forward"))
        if method not in ("euler", "rk4"):
            raise ConfigError("model.twin.encoder_method", method, ("euler", "rk4"))
        if ode_steps < 1:
            raise ConfigError("model.twin.encoder_ode_steps", ode_steps, hint="use at least one step per gap")
        if not time_scale_h > 0:
            raise ConfigError("model.twin.encoder_time_scale_h", time_scale_h, hint="a positive number of hours")
        self.backward = direction == "backward"
        self.ode_steps, self.rk4, self.time_scale_h = int(ode_steps), method == "rk4", float(time_scale_h)
        self.n_inputs = n_inputs
        self.cell = nn.GRUCell(2 * n_measurements + n_inputs, hidden)
        self.ode = HiddenODE(hidden, hidden)
        self.init_h = nn.Linear(static_dim, hidden)
        self.to_q = nn.Linear(hidden + 1, 2 * latent_dim)
        self.latent_dim = latent_dim

    @torch.jit.export
    def init_state(self, s: Tensor) -> Tensor:
        raise RuntimeError("streaming updates (encode_step) need the gru_delta encoder; re-encode the history instead")

    @torch.jit.export
    def step(self, inp: Tensor, h: Tensor) -> Tensor:
        raise RuntimeError("streaming updates (encode_step) need the gru_delta encoder; re-encode the history instead")

    @torch.jit.export
    def read_out(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raise RuntimeError("streaming updates (encode_step) need the gru_delta encoder; re-encode the history instead")

    def evolve(self, h: Tensor, dt: Tensor) -> Tensor:
        """Move ``h [B, H]`` by signed time ``dt [B]`` (scaled units) with fixed steps."""
        step = (dt / self.ode_steps).unsqueeze(-1)
        for _ in range(self.ode_steps):
            k1 = self.ode(h)
            if self.rk4:
                k2 = self.ode(h + 0.5 * step * k1)
                k3 = self.ode(h + 0.5 * step * k2)
                k4 = self.ode(h + step * k3)
                h = h + step / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            else:
                h = h + step * k1
        return h

    def forward(self, t: Tensor, x: Tensor, m: Tensor, length: Tensor, s: Tensor,
                u: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        n = t.shape[1]
        h = torch.tanh(self.init_h(s))
        last = (length - 1).clamp(min=0)
        anchor = t.gather(1, last.unsqueeze(1)).squeeze(1)
        prev = anchor if self.backward else t[:, 0]
        for j in range(n):
            i = n - 1 - j if self.backward else j
            live = i < length
            ti = t[:, i]
            # Signed elapsed time since the previous observation: negative when running back.
            dt = torch.where(live, ti - prev, torch.zeros_like(ti)) / self.time_scale_h
            h_ode = self.evolve(h, dt)
            parts = [x[:, i] * m[:, i], m[:, i]]
            if self.n_inputs > 0:
                parts.append(u[:, i] if u is not None else torch.zeros(x.shape[0], self.n_inputs, dtype=x.dtype,
                                                                         device=x.device))
            h_new = self.cell(torch.cat(parts, dim=-1), h_ode)
            h = torch.where(live.unsqueeze(-1), h_new, h)
            prev = torch.where(live, ti, prev)
        span = torch.where(length > 0, anchor - t[:, 0], torch.zeros_like(anchor)) / self.time_scale_h
        q = self.to_q(torch.cat([h, span.unsqueeze(-1)], dim=-1))
        mean, log_std = q[:, : self.latent_dim], q[:, self.latent_dim:]
        return mean, log_std.clamp(-8.0, 4.0)

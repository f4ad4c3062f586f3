"""History encoders: per-subject sequences of (values, masks, time gaps) -> initial latent."""


import torch
from torch import Tensor, nn


class GRUDeltaEncoder(nn.Module):
    """GRU over observations with the log time gap as an input, stepping every subject over
    its own sequence in lockstep (no union of times); padded steps leave the state alone.

    Returns the posterior ``q(z | history)`` at the last observation: mean and log-std.
    """

    def __init__(self, n_measurements: int, static_dim: int, latent_dim: int, hidden: int = 64):
        super().__init__()
        self.cell = nn.GRUCell(2 * n_measurements + 1, hidden)
        self.init_h = nn.Linear(static_dim, hidden)
        self.to_q = nn.Linear(hidden, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, t: Tensor, x: Tensor, m: Tensor, length: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(self.init_h(s))
        prev = t[:, 0]
        for i in range(t.shape[1]):
            gap = (t[:, i] - prev).clamp(min=0.0)
            inp = torch.cat([x[:, i] * m[:, i], m[:, i], torch.log1p(gap).unsqueeze(-1)], dim=-1)
            h_new = self.cell(inp, h)
            live = (i < length).unsqueeze(-1)
            h = torch.where(live, h_new, h)
            prev = torch.where(i < length, t[:, i], prev)
        q = self.to_q(h)
        mean, log_std = q[:, : self.latent_dim], q[:, self.latent_dim:]
        return mean, log_std.clamp(-8.0, 4.0)

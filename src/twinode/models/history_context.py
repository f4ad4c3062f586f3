"""What the history says around a query inside it: a forward and a backward GRU over the
observations (a filter and its reverse), read at the history times just before and just
after the query, give each channel a correction for queries between observations.

The anchored decoder bridges each channel between its own neighbouring observations; this
lets the other channels measured nearby (blood pressures, gases, the labs of the same draw)
move that bridge. Queries before the first history time get no correction; queries after
the last one get none either unless ``forecast`` is on: then a second head reads the forward
state at the end of the history and the time since it, so a forecast can use what every
channel showed up to the cut directly, not only through the latent state.
"""

from typing import Final, Tuple

import torch
from torch import Tensor, nn

from twinode.models.anchoring import query_positions, reverse_live


def _zero_head(inp: int, hidden: int, out: int) -> nn.Sequential:
    """A tanh MLP whose output layer starts at zero (built output layer first, as the context's
    correction always was: the same random draws, so the same initial weights)."""
    last = nn.Linear(hidden, out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(inp, hidden), nn.Tanh(), last)


class HistoryContext(nn.Module):
    """``forward(hist_t, hist_x, hist_m, hist_len, tq)`` -> correction ``[B, Q, D]``
    (normalised units; 0 outside the history) and whether each query lies inside ``[B, Q]``.
    The output layers start at zero, so a new context changes nothing until trained.
    ``forecast``: queries after the last history time get a correction too (see above)."""

    forecast: Final[bool]

    def __init__(self, n_measurements: int, hidden: int, out_hidden: int = 64, forecast: bool = False):
        super().__init__()
        inp = 2 * n_measurements + 1
        self.fwd = nn.GRU(inp, hidden, batch_first=True)
        self.bwd = nn.GRU(inp, hidden, batch_first=True)
        self.out = _zero_head(2 * hidden + 2, out_hidden, n_measurements)
        self.forecast = forecast
        # Built only when asked: a twin without it draws the same initial weights as before it existed.
        self.ahead = _zero_head(hidden + 1, out_hidden, n_measurements) if forecast else nn.Identity()

    @torch.jit.ignore
    def output_penalty(self) -> Tensor:
        """Squared size of the output layers: 0 where the context corrects nothing."""
        layers = [self.out[-1]] + ([self.ahead[-1]] if isinstance(self.ahead, nn.Sequential) else [])
        return sum((p.pow(2).sum() for layer in layers for p in layer.parameters()), torch.zeros(()))

    def states(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor) -> Tuple[Tensor, Tensor]:
        """Forward and backward GRU states ``[B, N, H]`` at every history index (the backward
        state at ``i`` has read indices ``i`` to the last live one)."""
        gap = (hist_t - torch.cat([hist_t[:, :1], hist_t[:, :-1]], dim=1)).clamp(min=0.0)
        f_in = torch.cat([hist_x * hist_m, hist_m, torch.log1p(gap).unsqueeze(-1)], dim=-1)
        h_f, _ = self.fwd(f_in)
        t_r = reverse_live(hist_t, hist_len)
        gap_r = (torch.cat([t_r[:, :1], t_r[:, :-1]], dim=1) - t_r).clamp(min=0.0)
        b_in = torch.cat([reverse_live(hist_x * hist_m, hist_len), reverse_live(hist_m, hist_len),
                          torch.log1p(gap_r).unsqueeze(-1)], dim=-1)
        h_b, _ = self.bwd(b_in)
        return h_f, reverse_live(h_b, hist_len)

    def forward(self, hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor,
                tq: Tensor) -> Tuple[Tensor, Tensor]:
        h_f, h_b = self.states(hist_t, hist_x, hist_m, hist_len)
        n, hid = hist_t.shape[1], h_f.shape[-1]
        pos = query_positions(hist_t, hist_len, tq)  # the query lies between pos - 1 and pos
        inside = (pos > 0) & (pos < hist_len.unsqueeze(1))
        i_prev, i_next = (pos - 1).clamp(min=0, max=n - 1), pos.clamp(max=n - 1)
        s_prev = torch.gather(h_f, 1, i_prev.unsqueeze(-1).expand(-1, -1, hid))
        s_next = torch.gather(h_b, 1, i_next.unsqueeze(-1).expand(-1, -1, hid))
        age = (tq - torch.gather(hist_t, 1, i_prev)).clamp(min=0.0)
        gap = (torch.gather(hist_t, 1, i_next) - tq).clamp(min=0.0)
        feats = torch.cat([s_prev, s_next, torch.log1p(age).unsqueeze(-1), torch.log1p(gap).unsqueeze(-1)], dim=-1)
        inside_f = inside.to(hist_x.dtype)
        corr = self.out(feats) * inside_f.unsqueeze(-1)
        if self.forecast:
            # After the last history time: the forward state there and how far ahead the query is.
            after = ((pos >= hist_len.unsqueeze(1)) & (hist_len.unsqueeze(1) > 0)).to(hist_x.dtype)
            i_last = (hist_len - 1).clamp(min=0)
            s_last = torch.gather(h_f, 1, i_last.view(-1, 1, 1).expand(-1, 1, hid)).expand(-1, tq.shape[1], -1)
            ahead = (tq - torch.gather(hist_t, 1, i_last.unsqueeze(1))).clamp(min=0.0)
            corr = corr + self.ahead(torch.cat([s_last, torch.log1p(ahead).unsqueeze(-1)], dim=-1)) * after.unsqueeze(-1)
        return corr, inside_f

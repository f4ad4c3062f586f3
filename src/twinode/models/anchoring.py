"""Per-channel anchors of a query time in a subject's history: the last value seen of each
channel at or before the query (and how long ago), and the next one after it (and how far
ahead), plus the history's per-channel mean and count.

Everything is computed on the padded batch (``[B, N]`` times, ``[B, N, D]`` values and masks,
``[B]`` lengths) with cumulative max/min over indices, so the cost is ``O(B (N + Q) D)``:
no ``[B, Q, N, D]`` comparison is ever built.
"""

from typing import Tuple

import torch
from torch import Tensor


def _live_mask(hist_m: Tensor, hist_len: Tensor) -> Tensor:
    n = hist_m.shape[1]
    live = torch.arange(n, device=hist_m.device).unsqueeze(0) < hist_len.unsqueeze(1)
    return hist_m * live.unsqueeze(-1).to(hist_m.dtype)


def history_stats(hist_x: Tensor, hist_m: Tensor, hist_len: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel mean ``[B, D]`` (0 where never seen) and observation count ``[B, D]``."""
    m = _live_mask(hist_m, hist_len)
    cnt = m.sum(1)
    mean = (hist_x * m).sum(1) / cnt.clamp(min=1.0)
    return mean, cnt


def history_extremes(hist_x: Tensor, hist_m: Tensor, hist_len: Tensor) -> Tuple[Tensor, Tensor]:
    """Per-channel minimum and maximum ``[B, D]`` over the history (0 where never seen)."""
    m = _live_mask(hist_m, hist_len)
    big = 1.0e4
    seen = m.sum(1) > 0
    lo = torch.where(m > 0, hist_x, torch.full_like(hist_x, big)).min(1).values
    hi = torch.where(m > 0, hist_x, torch.full_like(hist_x, -big)).max(1).values
    zero = torch.zeros_like(lo)
    return torch.where(seen, lo, zero), torch.where(seen, hi, zero)


def last_values(hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Each channel's last observed value ``[B, D]``, its time ``[B, D]`` and whether it exists."""
    m = _live_mask(hist_m, hist_len)
    n = m.shape[1]
    pos = torch.arange(1, n + 1, device=m.device, dtype=m.dtype).view(1, n, 1)
    last = (pos * m).argmax(dim=1)
    value = torch.gather(hist_x, 1, last.unsqueeze(1)).squeeze(1)
    when = torch.gather(hist_t, 1, last)  # [B, D]: index dims past the gathered one may differ
    seen = (m.sum(1) > 0).to(m.dtype)
    return value * seen, when, seen


def query_positions(hist_t: Tensor, hist_len: Tensor, tq: Tensor) -> Tensor:
    """How many live history times are at or before each query ``tq [B, Q]``: the query lies
    between history indices ``pos - 1`` and ``pos`` (``[B, Q]``, int64)."""
    n = hist_t.shape[1]
    live_t = torch.arange(n, device=hist_t.device).unsqueeze(0) < hist_len.unsqueeze(1)
    t_sorted = torch.where(live_t, hist_t, torch.full_like(hist_t, 3.0e38)).contiguous()
    pos = torch.searchsorted(t_sorted, tq.contiguous(), right=True)
    return torch.minimum(pos, hist_len.unsqueeze(1))


def reverse_live(x: Tensor, hist_len: Tensor) -> Tensor:
    """Each subject's live entries of ``x [B, N, ...]`` in reverse order (padding stays at the
    end); applying it twice gives ``x`` back."""
    n = x.shape[1]
    i = torch.arange(n, device=x.device).unsqueeze(0)
    src = torch.where(i < hist_len.unsqueeze(1), hist_len.unsqueeze(1) - 1 - i, i)  # [B, N]
    while src.dim() < x.dim():
        src = src.unsqueeze(-1)
    return torch.gather(x, 1, src.expand(x.shape))


def anchor_indices(hist_t: Tensor, hist_m: Tensor, hist_len: Tensor,
                   tq: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """For queries ``tq [B, Q]``: the history index of each channel's last observation at or
    before the query and whether it exists, and of its first observation after the query and
    whether it exists; each ``[B, Q, D]`` (indices clamped into range where they do not)."""
    B, N, D = hist_m.shape
    Q = tq.shape[1]
    m = _live_mask(hist_m, hist_len)
    idx = torch.arange(N, device=hist_m.device).view(1, N, 1).expand(B, N, D)
    neg = torch.full_like(idx, -1)
    big = torch.full_like(idx, N)
    last_at = torch.cummax(torch.where(m > 0, idx, neg), dim=1).values  # last observed index <= i
    next_at = torch.flip(torch.cummin(torch.flip(torch.where(m > 0, idx, big), [1]), dim=1).values, [1])  # first >= i
    pos = query_positions(hist_t, hist_len, tq)

    i_prev = (pos - 1).clamp(min=0).unsqueeze(-1).expand(B, Q, D)
    prev_idx = torch.gather(last_at, 1, i_prev)
    prev_ok = (prev_idx >= 0) & (pos > 0).unsqueeze(-1)
    i_next = pos.clamp(max=N - 1).unsqueeze(-1).expand(B, Q, D)
    next_idx = torch.gather(next_at, 1, i_next)
    next_ok = (next_idx < hist_len.view(B, 1, 1)) & (pos < hist_len.unsqueeze(1)).unsqueeze(-1)
    return prev_idx.clamp(min=0), prev_ok.to(hist_m.dtype), next_idx.clamp(max=N - 1), next_ok.to(hist_m.dtype)


def channel_anchors(hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor,
                    tq: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """For queries ``tq [B, Q]``: previous value, its age (``tq - t_prev`` >= 0), whether it
    exists; next value, its gap (``t_next - tq`` > 0), whether it exists. Each ``[B, Q, D]``;
    where an anchor does not exist its value and age are 0."""
    prev_idx, prev_ok, next_idx, next_ok = anchor_indices(hist_t, hist_m, hist_len, tq)
    return anchors_at(hist_t, hist_x, tq, prev_idx, prev_ok, next_idx, next_ok)


def anchors_at(hist_t: Tensor, hist_x: Tensor, tq: Tensor, prev_idx: Tensor, prev_ok: Tensor, next_idx: Tensor,
               next_ok: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Values, ages and gaps of the anchors :func:`anchor_indices` found (see :func:`channel_anchors`)."""
    B, N, D = hist_x.shape
    t3 = hist_t.unsqueeze(-1).expand(B, N, D)
    prev_val = torch.gather(hist_x, 1, prev_idx) * prev_ok
    prev_age = (tq.unsqueeze(-1) - torch.gather(t3, 1, prev_idx)).clamp(min=0.0) * prev_ok
    next_val = torch.gather(hist_x, 1, next_idx) * next_ok
    next_gap = (torch.gather(t3, 1, next_idx) - tq.unsqueeze(-1)).clamp(min=0.0) * next_ok
    return prev_val, prev_age, prev_ok, next_val, next_gap, next_ok


def smoothed_values(hist_t: Tensor, hist_x: Tensor, hist_m: Tensor, hist_len: Tensor, taus: Tensor) -> Tensor:
    """Each channel's kernel-smoothed value at every history time ``[B, N, D, J]``: the mean of
    its observations weighted by ``exp(-|t_i - t| / tau_j)`` on both sides, for each bandwidth of
    ``taus [J]`` (hours). Where a channel has no observation it is 0.

    Two exponential scans (forward and backward) give it in ``O(B N D J)``: the running sums
    decay by ``exp(-gap / tau)`` from one history time to the next, so no ``[N, N]`` weight
    matrix is built and nothing overflows however long the history is."""
    m = _live_mask(hist_m, hist_len).unsqueeze(-1)  # [B, N, D, 1]
    mx = hist_x.unsqueeze(-1) * m
    n = hist_t.shape[1]
    gaps = (hist_t[:, 1:] - hist_t[:, :-1]).clamp(min=0.0)  # [B, N - 1]
    decay = torch.exp(-gaps.unsqueeze(-1) / taus.view(1, 1, -1)).unsqueeze(2)  # [B, N - 1, 1, J]
    fwd_s, fwd_w = [mx[:, 0] * 1.0], [m[:, 0] * 1.0]  # [B, D, J] per step after broadcasting
    fwd_s[0] = fwd_s[0].expand(-1, -1, taus.shape[0])
    fwd_w[0] = fwd_w[0].expand(-1, -1, taus.shape[0])
    for i in range(1, n):
        fwd_s.append(fwd_s[i - 1] * decay[:, i - 1] + mx[:, i])
        fwd_w.append(fwd_w[i - 1] * decay[:, i - 1] + m[:, i])
    bwd_s, bwd_w = [fwd_s[0]] * n, [fwd_w[0]] * n
    bwd_s[n - 1] = mx[:, n - 1].expand(-1, -1, taus.shape[0])
    bwd_w[n - 1] = m[:, n - 1].expand(-1, -1, taus.shape[0])
    for i in range(n - 2, -1, -1):
        bwd_s[i] = bwd_s[i + 1] * decay[:, i] + mx[:, i]
        bwd_w[i] = bwd_w[i + 1] * decay[:, i] + m[:, i]
    s = torch.stack(fwd_s, 1) + torch.stack(bwd_s, 1) - mx  # the point itself counted once
    w = torch.stack(fwd_w, 1) + torch.stack(bwd_w, 1) - m
    return torch.where(w > 1e-12, s / w.clamp(min=1e-12), torch.zeros_like(s))

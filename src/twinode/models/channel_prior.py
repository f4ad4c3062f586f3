"""Each channel's decay toward its subject's level, fitted on training windows: the prior an
anchored twin starts from and is pulled back to.

The fit is the decay-to-mean forecaster ``level + (last - level) exp(-k age)`` with
``level = w * history mean`` (normalised units, 0 is the population mean), ``w`` and the
half-life per channel chosen by grid search to minimise the squared error on the targets.
Started there, the twin begins as that floor; a channel with few targets stays near it
instead of near one rate shared by every channel (a day-long half-life suits troponin and is
wrong for magnesium, which is repleted within hours).
"""

from __future__ import annotations

import math
from typing import Iterable, Tuple

import torch
from torch import Tensor

from twinode.models.anchoring import channel_anchors, history_stats

WEIGHTS = tuple(i / 10 for i in range(11))
HALF_LIVES_H = (0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 9.0, 12.0, 18.0, 24.0, 36.0, 48.0, 72.0, 120.0, 240.0, 1e6)


def fit_channel_decay(batches: Iterable, n_channels: int) -> Tuple[Tensor, Tensor]:
    """Per-channel ``(w, k)`` ``[D]`` (``k`` in 1/h) minimising the squared error of
    decay-to-mean on the targets of ``batches`` (collated windows). A channel with no target
    after a seen value keeps ``w = 1`` and the longest half-life: carry it forward."""
    ks = torch.tensor([math.log(2.0) / h for h in HALF_LIVES_H])
    ws = torch.tensor(WEIGHTS)
    sse = torch.zeros(len(ws), len(ks), n_channels, dtype=torch.float64)
    for b in batches:
        prev, age, prev_ok = channel_anchors(b.hist_t, b.hist_x, b.hist_m, b.hist_len, b.tgt_t)[:3]
        mean, cnt = history_stats(b.hist_x, b.hist_m, b.hist_len)
        mean = (mean * (cnt > 0).to(mean.dtype)).unsqueeze(1)
        m = (b.tgt_m * prev_ok).double()
        prev, age, mean, tgt = prev.double(), age.double(), mean.double(), b.tgt_x.double()
        for j, k in enumerate(ks):
            # error = a + w c with a = prev r - target, c = mean (1 - r): every w from three sums.
            r = torch.exp(-float(k) * age)
            a, c = prev * r - tgt, mean * (1.0 - r)
            saa, sac, scc = ((a * a * m).sum((0, 1)), (a * c * m).sum((0, 1)), (c * c * m).sum((0, 1)))
            w = ws.double().unsqueeze(1)
            sse[:, j] += saa + 2.0 * w * sac + w * w * scc
    flat = sse.flatten(0, 1)
    best = flat.argmin(0)
    untouched = flat.max(0).values == 0  # no target anywhere: nothing to fit
    w = torch.where(untouched, torch.ones(n_channels), ws[best // len(ks)])
    k = torch.where(untouched, ks[-1].expand(n_channels), ks[best % len(ks)])
    return w.float(), k.float()

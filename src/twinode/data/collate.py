"""Pad windows into a batch: each subject keeps its own times; masks mark real entries."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from twinode.data.windows import Window


@dataclass
class Batch:
    subject_id: torch.Tensor  # [B] int64
    hist_t: torch.Tensor  # [B, N] padded by repeating the last time
    hist_x: torch.Tensor  # [B, N, D]
    hist_m: torch.Tensor  # [B, N, D]
    hist_len: torch.Tensor  # [B] int64
    tgt_t: torch.Tensor  # [B, Q]
    tgt_x: torch.Tensor  # [B, Q, D]
    tgt_m: torch.Tensor  # [B, Q, D]; 0 on padding
    doses: torch.Tensor  # [B, M, 4]; padding rows have amount 0
    static: torch.Tensor  # [B, S] normalised, 0 where unknown
    static_m: torch.Tensor  # [B, S] 1 known
    outcome: torch.Tensor  # [B] NaN unknown
    anchor: torch.Tensor  # [B]

    def to(self, device) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.subject_id.shape[0]


def _pad(arrays: list[np.ndarray], length: int, fill_last: bool = False) -> np.ndarray:
    shape = (len(arrays), length) + arrays[0].shape[1:]
    out = np.zeros(shape, np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
        if fill_last and len(a) and len(a) < length:
            out[i, len(a):] = a[-1]
    return out


def collate_windows(windows: list[Window]) -> Batch:
    n = max(1, max(len(w.hist_t) for w in windows))
    q = max(1, max(len(w.tgt_t) for w in windows))
    m = max(1, max(len(w.doses) for w in windows))
    tgt_t = _pad([w.tgt_t for w in windows], q, fill_last=True)
    for i, w in enumerate(windows):  # empty horizons: park padding at the anchor
        if len(w.tgt_t) == 0:
            tgt_t[i] = w.anchor
    static = np.stack([w.static for w in windows]).astype(np.float32)
    static_m = np.isfinite(static).astype(np.float32)
    t = torch.from_numpy
    return Batch(
        subject_id=torch.tensor([w.subject_id for w in windows], dtype=torch.int64),
        hist_t=t(_pad([w.hist_t for w in windows], n, fill_last=True)),
        hist_x=t(_pad([w.hist_x for w in windows], n)),
        hist_m=t(_pad([w.hist_m for w in windows], n)),
        hist_len=torch.tensor([len(w.hist_t) for w in windows], dtype=torch.int64),
        tgt_t=t(tgt_t),
        tgt_x=t(_pad([w.tgt_x for w in windows], q)),
        tgt_m=t(_pad([w.tgt_m for w in windows], q)),
        doses=t(_pad([w.doses for w in windows], m)),
        static=t(np.nan_to_num(static, nan=0.0)),
        static_m=t(static_m),
        outcome=torch.tensor([w.outcome for w in windows], dtype=torch.float32),
        anchor=torch.tensor([w.anchor for w in windows], dtype=torch.float32),
    )

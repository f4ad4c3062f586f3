"""Forecast windows: a history (observations up to a cut time) and the horizon after it.

Training draws a fresh random cut per subject per epoch; evaluation uses a fixed cut so
metrics are comparable across runs and models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from twinode.data.tensorize import SubjectRecord


@dataclass
class Window:
    subject_id: int
    hist_t: np.ndarray
    hist_x: np.ndarray
    hist_m: np.ndarray
    tgt_t: np.ndarray
    tgt_x: np.ndarray
    tgt_m: np.ndarray
    doses: np.ndarray
    static: np.ndarray
    outcome: float
    anchor: float  # last history time: where the twin's latent state lives


MODES = ("random", "fixed", "interpolation", "extrapolation", "imputation", "mixed")


class ForecastWindows(Dataset):
    """One window per subject: history ``t <= cut``, targets ``cut < t <= cut + horizon``.

    ``mode="random"`` draws ``cut`` uniformly in ``[min_history_h, window_h - horizon_h]``
    per access (seeded by epoch and index, so workers and DDP ranks agree); ``"fixed"``
    uses ``window_h - horizon_h``. The Latent ODE PhysioNet tasks ignore ``horizon_h``:
    ``"interpolation"`` gives the whole window as history and the same points as targets
    (reconstruction); ``"extrapolation"`` cuts at ``window_h / 2`` (first 24 h -> last 24 h
    of a 48 h window).

    Held-out targets inside the history (what an anchored twin must learn to fill in):
    ``"imputation"`` keeps a seeded half of the window's time points as history and asks for
    the other half; ``"mixed"`` (training) draws a random cut as ``"random"`` does (with probability
    ``late_cut_share`` a late one, up to the window's end, so whole-stay histories are seen) and also
    holds out a random share (up to ``max_holdout``) of the history's time points as targets,
    so one twin learns to forecast and to impute. ``holdout_prob`` (default 1): the share of
    mixed windows that hold anything out; the others forecast from their whole history, as a
    forecast is asked at serving time.
    """

    def __init__(self, records: list[SubjectRecord], horizon_h: float, window_h: float, mode: str = "fixed",
                 min_history_h: float = 6.0, seed: int = 0, max_holdout: float = 0.5, late_cut_share: float = 0.25,
                 holdout_prob: float = 1.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.records = [r for r in records if len(r.times) > 0]
        self.horizon_h, self.window_h, self.mode = float(horizon_h), float(window_h), mode
        self.min_history_h, self.seed, self.epoch = float(min_history_h), seed, 0
        for name, v in (("max_holdout", max_holdout), ("late_cut_share", late_cut_share), ("holdout_prob", holdout_prob)):
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        self.max_holdout, self.late_cut_share = float(max_holdout), float(late_cut_share)
        self.holdout_prob = float(holdout_prob)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def cut_time(self, idx: int) -> float:
        if self.mode in ("interpolation", "imputation"):
            return self.window_h
        if self.mode == "extrapolation":
            return self.window_h / 2
        last = self.window_h - self.horizon_h
        if self.mode == "fixed":
            return last
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        if self.mode == "mixed" and rng.random() < self.late_cut_share:
            # A late cut (horizon past the window's end): mostly imputation, whole-stay history.
            return float(rng.uniform(last, self.window_h))
        return float(rng.uniform(min(self.min_history_h, last), last))

    def _held_out(self, idx: int, n_hist: int) -> np.ndarray:
        """Which of the history's ``n_hist`` time points become targets (never all of them)."""
        if self.mode == "imputation":
            rng = np.random.default_rng((self.seed, 7919, self.records[idx].subject_id))
            share = 0.5
        elif self.mode == "mixed":
            rng = np.random.default_rng((self.seed, self.epoch, idx, 1))
            share = float(rng.uniform(0.0, self.max_holdout))
            # Drawn from a stream of its own, so holdout_prob = 1 keeps the shares drawn above.
            if self.holdout_prob < 1.0 and np.random.default_rng((self.seed, self.epoch, idx, 2)).random() >= self.holdout_prob:
                return np.zeros(n_hist, bool)
        else:
            return np.zeros(n_hist, bool)
        out = rng.random(n_hist) < share
        if out.all():
            out[rng.integers(n_hist)] = False
        return out

    def __getitem__(self, idx: int) -> Window:
        r = self.records[idx]
        cut = self.cut_time(idx)
        h = r.times <= cut
        if not h.any():  # keep at least one observation in the history
            h = np.zeros_like(h)
            h[0] = True
            cut = float(r.times[0])
        if self.mode == "interpolation":
            tg = h
        elif self.mode in ("extrapolation", "imputation"):
            tg = (r.times > cut) & (r.times <= self.window_h)
        else:
            tg = (r.times > cut) & (r.times <= cut + self.horizon_h)
        hist_idx = np.flatnonzero(h)
        out = self._held_out(idx, len(hist_idx))
        if out.any():  # move held-out history points into the targets
            h = h.copy()
            h[hist_idx[out]] = False
            tg = tg | np.isin(np.arange(len(h)), hist_idx[out])
        hist_t = r.times[h]
        return Window(r.subject_id, hist_t, r.values[h], r.mask[h], r.times[tg], r.values[tg], r.mask[tg],
                      r.doses, r.static, r.outcome, float(hist_t[-1]))

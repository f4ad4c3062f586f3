"""LightningDataModule: source -> tensorize -> normalise (train stats) -> windows -> batches."""

from __future__ import annotations

import hashlib
import json

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from twinode.data.collate import collate_windows
from twinode.data.tensorize import Normaliser, tensorize
from twinode.data.windows import ForecastWindows
from twinode.errors import ConfigError, DataError

# forecast: history up to a cut, horizon after it (random cuts in training). interpolation and
# extrapolation are the Latent ODE PhysioNet tasks (see windows.ForecastWindows).
# mixed: random cuts with a random share of the history held out as targets too (the anchored
# twin's training task: it learns to forecast and to impute); validated like forecast.
TASKS = ("forecast", "interpolation", "extrapolation", "mixed")


class TwinDataModule(L.LightningDataModule):
    def __init__(self, source, horizon_h: float = 12.0, batch_size: int = 64, eval_batch_size: int = 256,
                 num_workers: int = 0, min_history_h: float = 6.0, seed: int = 0, task: str = "forecast",
                 max_holdout: float = 0.5, late_cut_share: float = 0.25, holdout_prob: float = 1.0):
        super().__init__()
        if task not in TASKS:
            raise ConfigError("data.task", task, TASKS)
        self.task = task
        self.source = source
        self.horizon_h, self.batch_size, self.eval_batch_size = horizon_h, batch_size, eval_batch_size
        self.num_workers, self.min_history_h, self.seed = num_workers, min_history_h, seed
        # The mixed task's training windows (data.windows.ForecastWindows).
        self.mixing = {"max_holdout": max_holdout, "late_cut_share": late_cut_share, "holdout_prob": holdout_prob}
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        loaded = self.source.load()
        self.spec, self.dataset_name = loaded.spec, loaded.name
        if loaded.records is not None:  # the source tensorized (and cached) itself
            records, self.report = loaded.records, loaded.report
        else:
            records, self.report = tensorize(loaded.events, loaded.spec, source=loaded.name)
        by_split: dict[str, list] = {"train": [], "tuning": [], "held_out": []}
        for r in records:
            by_split[loaded.splits.get(r.subject_id, "train")].append(r)
        for split in ("train", "tuning"):
            if not by_split[split]:
                raise DataError(f"the '{split}' split has no subjects", file=loaded.name,
                                hint="check metadata/subject_splits or the split fractions")
        self.normaliser = Normaliser.fit(by_split["train"], len(self.spec.interventions))
        self.splits = {k: [self.normaliser.apply(r) for r in v] for k, v in by_split.items()}
        self.fingerprint = loaded.fingerprint or _fingerprint(loaded.events, self.spec)
        w = self.spec.window_hours
        modes = {"forecast": ("random", "fixed"), "mixed": ("mixed", "fixed")}
        train_mode, eval_mode = modes.get(self.task, (self.task, self.task))
        self.train_windows = ForecastWindows(self.splits["train"], self.horizon_h, w, train_mode, self.min_history_h, self.seed,
                                             **self.mixing)
        self.val_windows = ForecastWindows(self.splits["tuning"], self.horizon_h, w, eval_mode)
        self.test_windows = ForecastWindows(self.splits["held_out"] or self.splits["tuning"], self.horizon_h, w, eval_mode)
        self._ready = True

    @property
    def dims(self) -> dict[str, int]:
        return {"n_measurements": len(self.spec.measurements), "n_static": len(self.spec.statics),
                "n_interventions": len(self.spec.interventions)}

    def _loader(self, ds, batch_size, shuffle):
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_windows,
                          num_workers=self.num_workers)  # not persistent: workers re-read the epoch-seeded windows

    def forecast_batches(self, split: str):
        """Batches of ``split``'s windows cut at a fixed time (history, then the horizon's
        observations as targets), in order: what a per-channel fit before training reads."""
        ds = ForecastWindows(self.splits[split], self.horizon_h, self.spec.window_hours, "fixed", seed=self.seed)
        return self._loader(ds, self.eval_batch_size, False)

    def train_dataloader(self):
        # Built once per fit; TwinLitModule.on_train_epoch_start advances the windows' epoch.
        return self._loader(self.train_windows, self.batch_size, True)

    def val_dataloader(self):
        return self._loader(self.val_windows, self.eval_batch_size, False)

    def test_dataloader(self):
        return self._loader(self.test_windows, self.eval_batch_size, False)


def _fingerprint(events, spec) -> str:
    """sha256 over the event table's content and the FeatureSpec: identifies the training data."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for col in ("subject_id", "time", "code", "numeric_value"):
        s = events[col]
        raw = s.to_numpy() if s.dtype.is_numeric() else s.hash(seed=0).to_numpy()  # strings: stable hashes
        h.update(np.ascontiguousarray(raw).tobytes())
    return h.hexdigest()

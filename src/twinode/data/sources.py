"""Where a cohort's events come from. Each source returns events, a FeatureSpec and splits.

A source is a small picklable object built from config (``_target_``); the datamodule
calls ``load()`` once per process.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from twinode.data.schema import FeatureSpec
from twinode.data.simulators import synthetic_icu


@dataclass
class LoadedEvents:
    events: pl.DataFrame  # subject_id, time (float hours from window start), code, numeric_value
    spec: FeatureSpec
    splits: dict[int, str]  # subject_id -> train | tuning | held_out
    name: str


class SyntheticICUSource:
    """The embedded default cohort, generated in code with a fixed seed (no downloads)."""

    def __init__(self, n_patients: int = 400, seed: int = 0):
        self.n_patients, self.seed = n_patients, seed

    def load(self) -> LoadedEvents:
        events = synthetic_icu.generate_cohort(self.n_patients, seed=self.seed)
        splits = synthetic_icu.default_splits(events["subject_id"].to_numpy(), seed=self.seed)
        return LoadedEvents(events, synthetic_icu.feature_spec(), splits, f"synthetic_icu(n={self.n_patients},seed={self.seed})")

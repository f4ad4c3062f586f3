"""Monitoring: score each new measurement against the twin's forecast from the history before it.

For every measurement event: predictive mean and std at its time from the history so far
(:class:`OnlineTwin`), ``z = (value - mean) / std``, an alert when ``|z|`` (or the signed z for
``direction="high"|"low"``) exceeds ``threshold`` for ``consecutive`` measurements in a row
of that channel; then the observation joins the history. Doses and statics update the
state as they arrive.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

import torch

from twinode.apps.online import OnlineTwin
from twinode.apps.stream import Event
from twinode.errors import ConfigError

DIRECTIONS = ("both", "high", "low")


@dataclass
class AlertRule:
    threshold: float = 3.0
    direction: str = "both"
    consecutive: int = 1
    warmup: int = 3  # measurements of a channel before it is scored

    def __post_init__(self):
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError("threshold", self.threshold, hint="a positive number of standard deviations")
        if self.direction not in DIRECTIONS:
            raise ConfigError("direction", self.direction, DIRECTIONS)
        if self.consecutive < 1 or self.warmup < 0:
            raise ConfigError("consecutive/warmup", (self.consecutive, self.warmup), hint="consecutive >= 1, warmup >= 0")

    def exceeds(self, z: float) -> bool:
        if not math.isfinite(z):
            return False
        s = {"both": abs(z), "high": z, "low": -z}[self.direction]
        return s > self.threshold


@dataclass
class Scored:
    line: int
    time_h: float
    name: str
    value: float
    mean: float
    std: float
    z: float
    alert: bool
    seconds: float  # forecast + update cost of this event

    def as_dict(self) -> dict:
        return asdict(self)


def z_score(value: float, mean: float, std: float) -> float:
    return (value - mean) / std if std > 0 else (math.inf if value != mean else 0.0)


class Monitor:
    def __init__(self, twin, meta: dict, rule: AlertRule = AlertRule(), num_samples: int = 32, seed: int = 0,
                 incremental: bool | None = None):
        self.state = OnlineTwin(twin, meta, num_samples=num_samples, seed=seed, incremental=incremental)
        self.rule = rule
        self.names = [f["name"] for f in meta["measurements"]]
        self.seen = [0] * self.state.D
        self.run = [0] * self.state.D  # consecutive exceedances per channel

    def feed(self, ev: Event) -> Scored | None:
        """Apply one event; a :class:`Scored` for a measurement (after warm-up), else None."""
        if ev.role != "measurement":
            self.state.add_event(ev)
            return None
        start = time.perf_counter()
        out = None
        d = ev.index
        if self.seen[d] >= self.rule.warmup and self.state.times:
            mean, std = self.state.predictive(torch.tensor([ev.time]))
            mu, sd = float(mean[0, d]), float(std[0, d])
            z = z_score(ev.value, mu, sd)
            self.run[d] = self.run[d] + 1 if self.rule.exceeds(z) else 0
            out = Scored(ev.line, ev.time, self.names[d], ev.value, mu, sd, z, self.run[d] >= self.rule.consecutive, 0.0)
        self.state.add_measurement(ev.time, d, ev.value)
        self.seen[d] += 1
        if out is not None:
            out.seconds = time.perf_counter() - start
        return out

    def run_stream(self, events: Iterable[Event]) -> Iterator[Scored]:
        for ev in events:
            s = self.feed(ev)
            if s is not None:
                yield s

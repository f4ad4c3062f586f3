"""CGM sensor error: autocorrelated, skewed noise on subcutaneous glucose.

Breton & Kovatchev, "Analysis, modeling, and simulation of the accuracy of continuous
glucose sensors", J Diabetes Sci Technol 2(5), 2008: a unit-variance AR(1) sequence
(partial autocorrelation ``pacf`` per sample) is mapped through a Johnson SU transform,
``noise = xi + lam * sinh((e - gamma) / delta)`` (mg/dL), added to the true subcutaneous
glucose and clipped to the sensor's reporting range. Defaults: the Dexcom parameters that
simglucose ships.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CGMSensor:
    pacf: float = 0.7
    gamma: float = -0.5444
    lam: float = 15.9574
    delta: float = 1.6898
    xi: float = -5.47
    min_mg_dl: float = 39.0
    max_mg_dl: float = 400.0

    def noise(self, shape: tuple[int, int], generator: torch.Generator, dtype=torch.float64) -> Tensor:
        """Johnson SU noise ``[B, N]`` (mg/dL), AR(1) along the sample axis."""
        B, N = shape
        white = torch.randn(B, N, generator=generator, dtype=dtype)
        e = torch.empty_like(white)
        scale = (1.0 - self.pacf ** 2) ** 0.5
        prev = white[:, 0]
        e[:, 0] = prev
        for i in range(1, N):
            prev = self.pacf * prev + scale * white[:, i]
            e[:, i] = prev
        return self.xi + self.lam * torch.sinh((e - self.gamma) / self.delta)

    def measure(self, gsub: Tensor, generator: torch.Generator) -> Tensor:
        """Noisy CGM readings for true subcutaneous glucose ``gsub [B, N]`` (one per sample)."""
        noise = self.noise(tuple(gsub.shape), generator, gsub.dtype).to(gsub.device)
        return torch.clamp(gsub + noise, self.min_mg_dl, self.max_mg_dl)

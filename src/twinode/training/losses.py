"""Training objective: masked Gaussian likelihood of history and horizon, plus a KL term."""

from __future__ import annotations

import torch
from torch import Tensor

from twinode.models.decoders import gaussian_nll


def kl_standard_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(0, 1)) summed over latent dims, per subject ``[B]``."""
    return 0.5 * (mean.pow(2) + torch.exp(2 * log_std) - 1.0 - 2 * log_std).sum(-1)


def kl_weight(epoch: int, target: float, anneal_epochs: int) -> float:
    """Linear KL annealing from 0 to ``target`` over ``anneal_epochs``."""
    if anneal_epochs <= 0:
        return target
    return target * min(1.0, (epoch + 1) / anneal_epochs)


def masked_nll(x: Tensor, mask: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Mean negative log-likelihood per observed entry (0 when nothing is observed)."""
    total, count = gaussian_nll(x, mask, mean, log_std)
    return total / count.clamp(min=1.0)


def beta_nll(x: Tensor, mask: Tensor, mean: Tensor, log_std: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Masked Gaussian NLL with each entry weighted by its predicted variance to the power
    ``beta``, held constant (Seitzer et al., ICLR 2022): at ``beta = 1`` the mean's gradient is the
    squared error's, so a wide spread no longer buys a hard channel off its mean; at 0 it is the
    plain likelihood. Returns the weighted sum and the count of observed entries."""
    if beta == 0.0:
        return gaussian_nll(x, mask, mean, log_std)
    w = torch.exp(2.0 * beta * log_std).detach()
    total, _ = gaussian_nll(x, mask * w, mean, log_std)
    return total, mask.sum()

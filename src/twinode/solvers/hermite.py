"""Cubic Hermite read-out of a solution stored on a uniform grid."""


import torch
from torch import Tensor


def hermite_readout(zs: Tensor, fs: Tensor, h: float, rel: Tensor) -> Tensor:
    """Interpolate ``zs [B, n+1, L]`` (with derivatives ``fs``) on nodes ``k*h`` at ``rel [B, Q]``.

    ``h`` may be negative (a backward grid); ``rel`` must share its sign or be 0.
    """
    n = zs.shape[1] - 1
    pos = rel / h
    k = torch.clamp(torch.floor(pos), 0.0, float(max(n - 1, 0)))
    tau = (pos - k).clamp(0.0, 1.0).unsqueeze(-1)
    idx = k.long()
    L = zs.shape[2]
    i0 = idx.unsqueeze(-1).expand(idx.shape[0], idx.shape[1], L)
    i1 = (idx + 1).clamp(max=n).unsqueeze(-1).expand(idx.shape[0], idx.shape[1], L)
    z0, z1 = torch.gather(zs, 1, i0), torch.gather(zs, 1, i1)
    f0, f1 = torch.gather(fs, 1, i0), torch.gather(fs, 1, i1)
    tau2 = tau * tau
    tau3 = tau2 * tau
    h00 = 2.0 * tau3 - 3.0 * tau2 + 1.0
    h10 = tau3 - 2.0 * tau2 + tau
    h01 = -2.0 * tau3 + 3.0 * tau2
    h11 = tau3 - tau2
    return h00 * z0 + h10 * h * f0 + h01 * z1 + h11 * h * f1

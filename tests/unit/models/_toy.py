"""Small random batches for model tests: each subject has its own irregular times and length."""

import torch


def toy_history(B=4, N=6, D=3, S=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.cumsum(torch.rand(B, N, generator=g) * 3.0 + 0.1, dim=1)
    x = torch.randn(B, N, D, generator=g)
    m = (torch.rand(B, N, D, generator=g) > 0.3).float()
    length = torch.randint(1, N + 1, (B,), generator=g)
    length[0] = N
    # Padding as collate writes it: time repeats the last real time, values and masks zero.
    for b in range(B):
        L = int(length[b])
        t[b, L:] = t[b, L - 1]
        x[b, L:] = 0.0
        m[b, L:] = 0.0
    s = torch.randn(B, S, generator=g)
    return t, x, m, length, s

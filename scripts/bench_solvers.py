"""Solve error vs wall time: fixed-grid rk4, dopri5 (per-sample steps) and torchdiffeq dopri5.

Batch of subjects with an MLP field (latent 32, hidden 128, two layers), each subject with its
own anchor and irregular query times on both sides of it (history and horizon of 24 h). The
reference is Dopri5Solver in float64 at rtol=atol=1e-10. Forward solve only, median of repeats.

    .venv/bin/python scripts/bench_solvers.py [--batch 256] [--queries 30] [--repeats 3] [--threads 1]
"""

import argparse
import platform
import statistics
import time

import torch
from torch import nn

from twinode.models.dynamics import MLPField
from twinode.solvers import Dopri5Solver, FixedGridSolver, TorchdiffeqSolver


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (2 on a busy 2-core box oversubscribes)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, Q, L = args.batch, args.queries, 32
    field = MLPField(L, 0, 0, hidden=128, layers=2)
    nn.init.normal_(field.net[-1].weight, std=0.05)  # non-trivial dynamics (the training init is near-still)
    z0 = torch.randn(B, L)
    t0 = 24.0 + 4.0 * torch.rand(B)
    tq = t0.unsqueeze(1) + (torch.rand(B, Q) * 48.0 - 24.0)
    doses, s = torch.zeros(B, 1, 4), torch.zeros(B, 0)
    with torch.no_grad():
        ref = Dopri5Solver(field.double(), rtol=1e-10, atol=1e-10, max_steps=100000)(
            z0.double(), t0.double(), tq.double(), doses.double(), s.double())
        field.float()
    cases = [("rk4 grid, step 2 h", FixedGridSolver(field, "rk4", 2.0)),
             ("rk4 grid, step 0.5 h", FixedGridSolver(field, "rk4", 0.5)),
             ("dopri5 per-sample, tol 1e-3", Dopri5Solver(field, rtol=1e-3, atol=1e-3)),
             ("dopri5 per-sample, tol 1e-5", Dopri5Solver(field, rtol=1e-5, atol=1e-6)),
             ("torchdiffeq dopri5, tol 1e-3", TorchdiffeqSolver(field, rtol=1e-3, atol=1e-3)),
             ("torchdiffeq dopri5, tol 1e-5", TorchdiffeqSolver(field, rtol=1e-5, atol=1e-6))]
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; batch {B}, {Q} queries/subject over +-24 h, float32")
    print("| solver | max abs error | median wall (ms) |")
    print("|---|---|---|")
    for name, solver in cases:
        times = []
        with torch.no_grad():
            for _ in range(args.repeats):
                start = time.perf_counter()
                z = solver(z0, t0, tq, doses, s)
                times.append(1e3 * (time.perf_counter() - start))
        err = float((z.double() - ref).abs().max())
        print(f"| {name} | {err:.2e} | {statistics.median(times):.0f} |")


if __name__ == "__main__":
    main()

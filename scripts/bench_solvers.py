"""Solve error vs wall time: fixed-grid rk4, dopri5 (per-sample steps) and torchdiffeq dopri5.

Batch of subjects with an MLP field (latent 32, hidden 128, two layers), each subject with its
own anchor and irregular query times on both sides of it (history and horizon of 24 h). The
reference is Dopri5Solver in float64 at rtol=atol=1e-10. Forward solve only, median of repeats.
Each solver's roofline line: FLOPs of one solve from the field's layer sizes times its
function evaluations (rows summed over calls), over the solve's time, against a large
``torch.mm`` measured in the same run.

    .venv/bin/python scripts/bench_solvers.py [--batch 256] [--queries 30] [--repeats 3] [--threads 1] [--only rk4 ...]
        [--device cpu|cuda] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import torch
from torch import nn

import benchlib
from twinode.models.dynamics import MLPField
from twinode.solvers import Dopri5Solver, FixedGridSolver, TorchdiffeqSolver

LATENT, HIDDEN = 32, 128


def cases(field: nn.Module) -> list[tuple[str, nn.Module]]:
    return [("rk4 grid, step 2 h", FixedGridSolver(field, "rk4", 2.0)),
            ("rk4 grid, step 0.5 h", FixedGridSolver(field, "rk4", 0.5)),
            ("dopri5 per-sample, tol 1e-3", Dopri5Solver(field, rtol=1e-3, atol=1e-3)),
            ("dopri5 per-sample, tol 1e-5", Dopri5Solver(field, rtol=1e-5, atol=1e-6)),
            ("torchdiffeq dopri5, tol 1e-3", TorchdiffeqSolver(field, rtol=1e-3, atol=1e-3)),
            ("torchdiffeq dopri5, tol 1e-5", TorchdiffeqSolver(field, rtol=1e-5, atol=1e-6))]


def problem(B: int, Q: int, device: str):
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", "Initializing zero-element tensors")  # the field's empty dose path
    field = MLPField(LATENT, 0, 0, hidden=HIDDEN, layers=2)
    last = field.out if hasattr(field, "out") else field.net[-1]  # the output layer (named out in newer fields)
    nn.init.normal_(last.weight, std=0.05)  # non-trivial dynamics (the training init is near-still)
    z0 = torch.randn(B, LATENT)
    t0 = 24.0 + 4.0 * torch.rand(B)
    tq = t0.unsqueeze(1) + (torch.rand(B, Q) * 48.0 - 24.0)
    doses, s = torch.zeros(B, 1, 4), torch.zeros(B, 0)
    return field.to(device), [x.to(device) for x in (z0, t0, tq, doses, s)]


def timed(solver: nn.Module, inputs: list, device: str) -> tuple[torch.Tensor, float]:
    benchlib.sync(device)
    start = time.perf_counter()
    z = solver(*inputs)
    benchlib.sync(device)
    return z, time.perf_counter() - start


def run(args) -> tuple[list[dict], float]:
    field, inputs = problem(args.batch, args.queries, args.device)
    with torch.no_grad():
        ref = Dopri5Solver(field.double(), rtol=1e-10, atol=1e-10, max_steps=100000)(*[x.double() for x in inputs])
        field.float()
    peak = benchlib.matmul_flops(args.device, n=args.matmul_n or (2048 if args.device == "cpu" else 8192))
    per_row = benchlib.linear_flops(field, 1)
    rows = []
    for name, solver in cases(field):
        if args.only and not any(o in name for o in args.only):
            continue
        with torch.no_grad():
            z, _ = timed(solver, inputs, args.device)  # warm-up (and the error)
            times = [timed(solver, inputs, args.device)[1] for _ in range(args.repeats)]
            with benchlib.CallCounter(field) as calls:  # an untimed solve: evaluations and counted FLOPs
                counted = benchlib.count_flops(lambda: solver(*inputs))
        sec = statistics.median(times)
        flops = per_row * calls.rows
        roof = benchlib.roofline(flops, sec, peak)
        rows.append({"name": name, "batch": args.batch, "seconds": sec, "per_second": args.batch / sec,
                     "error": float((z.double() - ref).abs().max()), "queries": args.queries,
                     "times": times, "field_calls": calls.calls, "field_rows": calls.rows, "flops": flops,
                     "flops_counted": counted, "achieved_flops": roof["achieved_flops"], "fraction": roof["fraction"],
                     "roofline": benchlib.roofline_line(flops, sec, peak, unit="solve")})
    return rows, peak


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, help="subjects per solve (default 256; 64 with --quick)")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--repeats", type=int, help="timed solves per solver (default 3; 2 with --quick)")
    ap.add_argument("--only", nargs="*", help="run only solvers whose name contains one of these")
    ap.add_argument("--matmul-n", type=int, help="size of the reference torch.mm (default: 2048 on CPU, 8192 on GPU)")
    benchlib.common_args(ap)
    args = ap.parse_args(argv)
    args.batch = args.batch or (64 if args.quick else 256)
    args.repeats = args.repeats or (2 if args.quick else 3)
    torch.set_num_threads(args.threads)
    machine = benchlib.machine_info(args.threads, args.device)
    rows, peak = run(args)
    print(f"machine: {machine['cpu']}, torch {torch.__version__}, {args.threads} thread(s), device {args.device}"
          f"{', ' + machine['gpu'] if 'gpu' in machine else ''}; batch {args.batch}, {args.queries} queries/subject "
          f"over +-24 h, float32; MLP field latent {LATENT}, hidden {HIDDEN} x 2")
    print(benchlib.markdown_table(rows, [
        ("solver", "name"), ("max abs error", "error", ".2e"), ("median wall (ms)", lambda r: 1e3 * r["seconds"], ".0f"),
        ("subjects/s", "per_second", ",.0f"), ("field evals", "field_calls"),
        ("% of matmul", lambda r: 100 * r["fraction"], ".2g")]))
    print()
    for r in rows:
        print(f"{r['name']}: {r['field_calls']} field evaluations, {r['field_rows']:,} rows; {r['roofline']}")
    if args.json:
        benchlib.write_json(args.json, machine, rows, extra={
            "command": "python scripts/bench_solvers.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "peak_flops": peak, "loadavg_end": list(__import__("os").getloadavg())})


if __name__ == "__main__":
    main()

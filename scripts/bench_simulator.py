"""Batched UVA/Padova simulation speed: simulated patient-days per second by batch size.

Each patient gets three meals with boluses on top of its steady-state basal rate, over one
day of one-minute RK4 steps (the integration the reference check uses). The figure to beat
is simglucose, which steps one patient at a time with scipy (about 11 s per patient-day on
the development machine). Median of repeats; a float32 column shows what a GPU would run.

The simulator is elementwise arithmetic, which FlopCounterMode counts as zero, so its
roofline line estimates one FLOP per output element of every torch op (counted over the
first hour, scaled to the run) and also gives the op dispatch rate, which bounds small batches.

    .venv/bin/python scripts/bench_simulator.py [--batch-sizes 1 10 100 1000] [--days 1] [--repeats 1]
        [--device cpu] [--dtype float64] [--threads 1] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import benchlib
from twinode.data.simulators.uva_padova import UVAPadovaSimulator, load_patients, patient_names

SIMGLUCOSE_S_PER_PATIENT_DAY = 11.0
COUNT_MINUTES = 60


def scenario(batch: int, minutes: int, device: str, dtype: torch.dtype):
    names = patient_names()
    patients = load_patients([names[i % len(names)] for i in range(batch)], device=device, dtype=dtype)
    meals = torch.zeros(batch, minutes, dtype=dtype, device=device)
    insulin = patients.basal_u_per_min()[:, None].repeat(1, minutes)
    for day in range((minutes + 1439) // 1440):
        for minute, grams in ((420, 50.0), (750, 70.0), (1140, 80.0)):
            if day * 1440 + minute < minutes:
                meals[:, day * 1440 + minute] = grams
                insulin[:, day * 1440 + minute] += grams / 12.0
    return UVAPadovaSimulator(patients), meals, insulin


def one_run(batch: int, days: int, device: str, dtype: torch.dtype) -> float:
    sim, meals, insulin = scenario(batch, days * 1440, device, dtype)
    benchlib.sync(device)
    start = time.perf_counter()
    res = sim.simulate(meals, insulin, keep_states=False)
    benchlib.sync(device)
    seconds = time.perf_counter() - start
    assert bool(torch.isfinite(res.gsub).all())
    return seconds


def ops_per_minute(batch: int, device: str, dtype: torch.dtype) -> dict:
    """Torch ops and output elements per simulated minute, counted over the first hour."""
    sim, meals, insulin = scenario(batch, COUNT_MINUTES, device, dtype)
    sim.simulate(meals, insulin, keep_states=False)  # warm-up: the scripted step's profiling runs
    counted = benchlib.count_ops(lambda: sim.simulate(meals, insulin, keep_states=False))
    return {k: v / COUNT_MINUTES for k, v in counted.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="default 1 10 100 1000; 1 1000 with --quick")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--matmul-n", type=int, help="size of the reference torch.mm (default: 1024 on CPU, 8192 on GPU)")
    benchlib.common_args(ap)
    args = ap.parse_args(argv)
    batch_sizes = args.batch_sizes or ([1, 1000] if args.quick else [1, 10, 100, 1000])
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    machine = benchlib.machine_info(args.threads, args.device)
    peak = benchlib.matmul_flops(args.device, n=args.matmul_n or (1024 if args.device == "cpu" else 8192), dtype=dtype)
    print(f"# {machine['cpu']}, {machine['nproc']} cores, torch {torch.__version__}, device {args.device}"
          f"{' (' + machine['gpu'] + ')' if 'gpu' in machine else ''}, {args.dtype}, {args.threads} thread(s), "
          f"load average {machine['loadavg'][0]:.1f} at start")
    print("| patients in batch | days | wall s | patient-days / s | s per patient-day | vs simglucose (11 s / patient-day) |")
    print("|---:|---:|---:|---:|---:|---:|")
    rows = []
    for b in batch_sizes:
        secs = statistics.median(one_run(b, args.days, args.device, dtype) for _ in range(args.repeats))
        pd = b * args.days
        print(f"| {b} | {args.days} | {secs:.2f} | {pd / secs:.1f} | {secs / pd:.4f} | "
              f"{SIMGLUCOSE_S_PER_PATIENT_DAY * pd / secs:.0f}x |", flush=True)
        per_min = ops_per_minute(b, args.device, dtype)
        minutes = args.days * 1440
        flops = per_min["elements"] * minutes
        rows.append({"name": f"UVA/Padova, {b} patients x {args.days} day(s), {args.dtype}", "batch": b,
                     "seconds": secs, "per_second": pd / secs, "error": None, "unit": "patient-days",
                     "days": args.days, "s_per_patient_day": secs / pd,
                     "vs_simglucose": SIMGLUCOSE_S_PER_PATIENT_DAY * pd / secs,
                     "ops": per_min["ops"] * minutes, "ops_per_second": per_min["ops"] * minutes / secs,
                     "flops": flops, "fraction": benchlib.roofline(flops, secs, peak)["fraction"],
                     "roofline": benchlib.roofline_line(flops, secs, peak, unit="run")})
    print()
    for r in rows:
        print(f"{r['batch']} patients: {r['ops']:,.0f} torch ops = {r['ops_per_second']:,.0f} ops/s; "
              f"{r['roofline']} (elementwise estimate: 1 FLOP per output element, {args.dtype} matmul)")
    if args.json:
        benchlib.write_json(args.json, machine, rows, extra={
            "command": "python scripts/bench_simulator.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "peak_flops": peak, "peak_dtype": args.dtype, "loadavg_end": list(os.getloadavg())})


if __name__ == "__main__":
    main()

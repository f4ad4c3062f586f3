"""Batched UVA/Padova simulation speed: simulated patient-days per second by batch size.

Each patient gets three meals with boluses on top of its steady-state basal rate, over one
day of one-minute RK4 steps (the integration the reference check uses). The figure to beat
is simglucose, which steps one patient at a time with scipy (about 11 s per patient-day on
the development machine). Median of repeats; a float32 column shows what a GPU would run.

    .venv/bin/python scripts/bench_simulator.py [--batch-sizes 1 10 100 1000] [--days 1] [--repeats 1]
        [--device cpu] [--dtype float64] [--threads 1]
"""

import argparse
import os
import platform
import statistics
import time

import torch

from twinode.data.simulators.uva_padova import UVAPadovaSimulator, load_patients, patient_names


def one_run(batch: int, days: int, device: str, dtype: torch.dtype) -> float:
    names = patient_names()
    patients = load_patients([names[i % len(names)] for i in range(batch)], device=device, dtype=dtype)
    T = days * 1440
    meals = torch.zeros(batch, T, dtype=dtype, device=device)
    insulin = patients.basal_u_per_min()[:, None].repeat(1, T)
    for day in range(days):
        for minute, grams in ((420, 50.0), (750, 70.0), (1140, 80.0)):
            meals[:, day * 1440 + minute] = grams
            insulin[:, day * 1440 + minute] += grams / 12.0
    sim = UVAPadovaSimulator(patients)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    res = sim.simulate(meals, insulin, keep_states=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert bool(torch.isfinite(res.gsub).all())
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"device {args.device}, {args.dtype}, {args.threads} thread(s), load average {load:.1f} at start")
    print("| patients in batch | days | wall s | patient-days / s | s per patient-day | vs simglucose (11 s / patient-day) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for b in args.batch_sizes:
        secs = statistics.median(one_run(b, args.days, args.device, dtype) for _ in range(args.repeats))
        pd = b * args.days
        print(f"| {b} | {args.days} | {secs:.2f} | {pd / secs:.1f} | {secs / pd:.4f} | {11.0 * pd / secs:.0f}x |", flush=True)


if __name__ == "__main__":
    main()

"""Inference speed of the exported twin: single-patient 48-h forecast latency (p50, p99) and
batch throughput (forecast_batch), TorchScript twin.pt versus the eager predictor, plus
torch.compile and torch.export + AOTInductor where they work within a time budget.

The twin is a freshly initialised PatientTwin (the configs' model size: latent 16, hidden 64,
rk4 grid 1 h) exported with twinode.export.torchscript.export_twin and loaded back with
load_twin, so the timed file is exactly what ships. Latency calls are interleaved across
variants; a variant that fails or runs past ``--budget`` seconds is reported as "failed: ...".

A C++ row times the same twin.pt through libtorch (``examples/cpp``'s ``--time`` mode, same
request shape, no Python) when the example is built. ``--aoti-core`` adds torch.export +
AOTInductor on a check-free core with a fixed 48-h grid (the shape a ``.pt2`` export would need;
its compile takes minutes on 2 cores). A roofline line puts one forecast's FLOPs over its p50.

    .venv/bin/python scripts/bench_infer.py [--calls 200] [--batch 1024] [--threads 1]
        [--budget 120] [--aoti-core] [--device cpu|cuda] [--dtype bfloat16] [--tf32]
        [--cuda-graphs] [--json out.json] [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import benchlib

from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.export.torchscript import build_predictor, export_twin, load_twin
from twinode.models.twin import PatientTwin
from twinode.solvers import FixedGridSolver

NORMALISER = {"meas_mean": [85.0, 75.0, 0.8, 37.0], "meas_std": [12.0, 10.0, 0.4, 0.6],
              "static_mean": [62.0, 78.0, 0.5], "static_std": [14.0, 15.0, 0.5], "dose_scale": [6.0]}


def patient(gen: torch.Generator, n_obs: int = 30):
    """One patient: ``n_obs`` observations over 24 h, two doses, queries every hour for 48 h."""
    times = (torch.rand(n_obs, generator=gen) * 24.0).sort().values
    values = torch.tensor(NORMALISER["meas_mean"]) + torch.randn(n_obs, 4, generator=gen) * torch.tensor(NORMALISER["meas_std"])
    mask = (torch.rand(n_obs, 4, generator=gen) < 0.6).float()
    static = torch.tensor([60.0, 80.0, float("nan")])
    doses = torch.tensor([[2.0, 0.0, 8.0, 0.0], [20.0, 0.0, 4.0, 2.0]])
    query = float(times[-1]) + torch.arange(1, 49, dtype=torch.float32)
    return times, values, mask, static, doses, query


def batch_inputs(B: int, gen: torch.Generator):
    rows = [patient(gen) for _ in range(B)]
    stack = lambda i: torch.stack([r[i] for r in rows])  # noqa: E731
    return (stack(0), stack(1), stack(2), torch.full((B,), 30, dtype=torch.long), stack(3), stack(4),
            torch.full((B,), 2, dtype=torch.long), stack(5))


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def within(budget: float, fn):
    """``fn()``, or Timeout when it runs past ``budget`` seconds (checked between Python ops)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(budget)))
    try:
        return fn()
    finally:
        signal.alarm(0)


def failed(exc: BaseException) -> str:
    if isinstance(exc, Timeout):
        return "failed: over the time budget"
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"failed: {type(exc).__name__}: {first[:100]}"


class FixedGridCore(torch.nn.Module):
    """``forecast`` without input checks on a grid of fixed length (``horizon_h`` ahead of the
    anchor, queries inside it): no data-dependent Python control flow, so torch.export takes it."""

    def __init__(self, predictor, horizon_h: float = 48.0):
        super().__init__()
        self.p, self.horizon_h = predictor, horizon_h

    def forward(self, times, values, mask, static, doses, query_times):
        from twinode.solvers.hermite import hermite_readout

        p, tw = self.p, self.p.twin
        post = p._posterior(times, values, mask, static, doses)
        z, anchor, s_emb = post["z_mean"], post["anchor"], post["s_emb"]
        zs, fs, h = tw.solver.integrate(z, anchor, self.horizon_h, p._norm_doses(doses)[None], s_emb)
        mean, log_std = tw.decoder(hermite_readout(zs, fs, h, (query_times - anchor)[None]))
        return p._to_original(mean[0], log_std[0])


def cpp_latency(binary: Path, twin_pt: Path, calls: int, threads: int) -> tuple[float, float]:
    """p50, p99 in ms of the C++ example's ``--time`` loop on ``twin_pt``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([str(binary), str(twin_pt), "--time", str(calls)], capture_output=True, text=True,
                          timeout=600, env=env)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    p50, p99 = done.stdout.split()[:2]
    return float(p50) / 1e3, float(p99) / 1e3


def build_variants(twin: PatientTwin, workdir: Path, single, budget: float, device: str,
                   aoti_core: bool = False, cuda_graphs: bool = False) -> tuple[dict, dict]:
    """name -> (forecast(*single), forecast_batch(*batch) or None); name -> failure."""
    spec = feature_spec()
    path = export_twin(twin, NORMALISER, spec, workdir / "twin.pt", solver={"name": "rk4", "step": 1.0})
    scripted, _ = load_twin(path)
    scripted = scripted.to(device)
    eager = build_predictor(twin, NORMALISER, spec).eval().to(device)
    variants = {"TorchScript twin.pt": (scripted.forecast, scripted.forecast_batch),
                "eager TwinPredictor": (eager.forecast, eager.forecast_batch)}
    failures = {}
    if aoti_core:
        try:
            core = FixedGridCore(eager).eval()

            def build():
                ep = torch.export.export(core, single)
                pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(workdir / "core.pt2"))
                return torch._inductor.aoti_load_package(pkg)

            start = time.perf_counter()
            loaded = within(budget, build)
            name = f"torch.export + AOTInductor, fixed 48-h grid core (built in {time.perf_counter() - start:.0f} s)"
            err = (loaded(*single)[0] - eager.forecast(*single)[0]).abs().max().item()
            if not err < 1e-3:
                raise RuntimeError(f"core differs from forecast by {err:.2e}")
            variants[name] = (loaded, None)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures["torch.export + AOTInductor, fixed 48-h grid core"] = failed(exc)
    if cuda_graphs:  # CUDA graphs of the check-free core (torch.compile mode "reduce-overhead")
        try:
            graphed = torch.compile(FixedGridCore(eager).eval(), mode="reduce-overhead" if device.startswith("cuda") else "default")
            within(budget, lambda: graphed(*single))
            variants["torch.compile(reduce-overhead), fixed 48-h grid core"] = (graphed, None)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures["torch.compile(reduce-overhead), fixed 48-h grid core"] = failed(exc)
    if budget <= 0:
        failures.update({"torch.compile (eager predictor)": "not run (--no-compile)",
                         "torch.export + AOTInductor": "not run (--no-compile)"})
        return variants, failures
    try:  # torch.compile of the single-patient forecast; compile time is spent in the first call
        compiled = torch.compile(eager.forecast)
        within(budget, lambda: compiled(*single))
        variants["torch.compile (eager predictor)"] = (compiled, None)
    except BaseException as exc:  # noqa: BLE001 - any compile failure is a result to report
        if isinstance(exc, KeyboardInterrupt):
            raise
        failures["torch.compile (eager predictor)"] = failed(exc)
    try:  # torch.export + AOTInductor: needs a graph without data-dependent Python control flow
        def aoti():
            class Forecast(torch.nn.Module):
                def __init__(self, p):
                    super().__init__()
                    self.p = p

                def forward(self, *a):
                    return self.p.forecast(*a)

            ep = torch.export.export(Forecast(eager), single)
            pkg = torch._inductor.aoti_compile_and_package(ep, package_path=str(workdir / "twin.pt2"))
            return torch._inductor.aoti_load_package(pkg)

        loaded = within(budget, aoti)
        variants["torch.export + AOTInductor"] = (loaded, None)
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        failures["torch.export + AOTInductor"] = failed(exc)
    return variants, failures


sync = benchlib.sync


def run(args) -> list[dict]:
    dev = args.device
    torch.manual_seed(0)
    twin = PatientTwin(4, 3, 1, solver=functools.partial(FixedGridSolver, method="rk4", step=1.0),
                       latent_dim=args.latent, hidden=args.hidden, encoder_hidden=args.hidden).eval()
    gen = torch.Generator().manual_seed(0)
    single = tuple(x.to(dev) for x in patient(gen))
    batch = tuple(x.to(dev) for x in batch_inputs(args.batch, gen))
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad(), benchlib.autocast(dev, args.autocast):
        variants, failures = build_variants(twin, Path(tmp), single, args.budget, dev, args.aoti_core, args.cuda_graphs)
        lat = {n: [] for n in variants}
        for n, (one, _) in variants.items():  # warm-up (TorchScript profiles its first calls)
            for _ in range(3):
                one(*single)
        for _ in range(args.calls):  # interleaved, so load changes hit every variant alike
            for n, (one, _) in variants.items():
                start = time.perf_counter()
                one(*single)
                sync(dev)
                lat[n].append(1e3 * (time.perf_counter() - start))
        for n, (_, many) in variants.items():
            thr = None
            if many is not None:
                for _ in range(2):  # warm-up: TorchScript optimises after its profiling runs
                    many(*batch)
                sec = []
                for _ in range(args.batch_repeats):
                    start = time.perf_counter()
                    many(*batch)
                    sync(dev)
                    sec.append(time.perf_counter() - start)
                thr = statistics.median(sec)
            qs = statistics.quantiles(lat[n], n=100, method="inclusive") if len(lat[n]) > 1 else lat[n] * 99
            rows.append({"name": n, "batch": 1, "seconds": statistics.median(lat[n]) / 1e3,
                         "per_second": 1e3 / statistics.median(lat[n]), "p50_ms": qs[49], "p99_ms": qs[98],
                         "batch_size": args.batch, "batch_seconds": thr,
                         "batch_per_second": args.batch / thr if thr else None, "error": None, "status": "ok"})
        binary = Path(args.cpp)
        if dev == "cpu" and binary.exists():
            try:
                p50, p99 = cpp_latency(binary, Path(tmp) / "twin.pt", args.calls, args.threads)
                rows.append({"name": "C++ libtorch, twin.pt (examples/cpp --time)", "batch": 1, "seconds": p50 / 1e3,
                             "per_second": 1e3 / p50, "p50_ms": p50, "p99_ms": p99, "batch_size": args.batch,
                             "batch_seconds": None, "batch_per_second": None, "error": None,
                             "status": "ok (no doses in the C++ request)"})
            except Exception as exc:  # noqa: BLE001 - a failed example is a result to report
                failures["C++ libtorch, twin.pt (examples/cpp --time)"] = failed(exc)
        elif dev == "cpu":
            failures["C++ libtorch, twin.pt (examples/cpp --time)"] = f"not run: {binary} not built (docs/export.md)"
        flops = benchlib.count_flops(lambda: variants["eager TwinPredictor"][0](*single))
        for r in rows:
            r["flops"] = flops
        for n, why in failures.items():
            rows.append({"name": n, "batch": 1, "seconds": None, "per_second": None, "p50_ms": None, "p99_ms": None,
                         "batch_size": args.batch, "batch_seconds": None, "batch_per_second": None, "error": None,
                         "status": why})
    return rows


def table(rows: list[dict]) -> str:
    f = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
    lines = ["| variant | p50 ms | p99 ms | batch | batch s | patients/s | status |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {f(r['p50_ms'], '.2f')} | {f(r['p99_ms'], '.2f')} | {r['batch_size']} | "
                     f"{f(r['batch_seconds'], '.3f')} | {f(r['batch_per_second'], '.0f')} | {r['status']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.common_args(ap)
    ap.add_argument("--calls", type=int, default=200, help="single-patient forecasts per variant")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=120.0, help="seconds for torch.compile / AOTInductor to build")
    ap.add_argument("--latent", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile and AOTInductor")
    ap.add_argument("--aoti-core", action="store_true", help="also build the fixed-grid core with AOTInductor (minutes)")
    ap.add_argument("--cuda-graphs", action="store_true", help="also time the fixed-grid core under torch.compile(reduce-overhead)")
    benchlib.precision_args(ap)
    ap.add_argument("--cpp", default=str(Path(__file__).resolve().parents[1] / "examples/cpp/build/twin_forecast"),
                    help="the built C++ example (timed when it exists)")
    ap.add_argument("--smoke", action="store_true", help="batch 4, few calls, no compilers: checks the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.calls, args.batch, args.no_compile = min(args.calls, 50), min(args.batch, 256), True
    if args.smoke:
        args.calls, args.batch, args.batch_repeats, args.no_compile = 5, 4, 1, True
    if args.no_compile:
        args.budget = 0.0
    torch.set_num_threads(args.threads)
    args.autocast = benchlib.apply_precision(args)
    info = benchlib.machine_info(args.threads, args.device)
    peak = benchlib.matmul_flops(args.device)
    rows = run(args)
    info.update({"loadavg_end": os.getloadavg(), "matmul_flops": peak, "dtype": args.dtype})
    print(json.dumps(info))
    print(table(rows))
    ts = next((r for r in rows if r["name"] == "TorchScript twin.pt"), None)
    lines = []
    if ts and ts["seconds"]:
        lines.append("TorchScript single-patient forecast " + benchlib.roofline_line(ts["flops"], ts["seconds"], peak, unit="forecast"))
    print("\n".join(lines))
    if args.json:
        benchlib.write_json(args.json, info, rows, {"goals": lines})


if __name__ == "__main__":
    main()

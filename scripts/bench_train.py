"""Training-step throughput (forward + backward of the real objective) for one PatientTwin under
several ODE solvers, side by side in one process, with each solver's solve error.

Irregular synthetic batches: every patient has 20-50 observations (times on a 1-minute grid) over
48 h, the first half is history (anchor = last history time), the rest the horizon; half the
channels observed; dose rows with zero amount unless ``--doses``. The objective is TwinLitModule's (masked Gaussian NLL of
history and horizon + KL). Solvers, all on the same weights:

- rk4 grid (our default FixedGridSolver, step 1 h, and 2 h / 3 h), and the same solver scripted;
- Dopri5Solver (per-sample adaptive steps);
- torchdiffeq dopri5 on the sorted union of the batch's times (the latent_ode approach: one
  odeint over every subject's time points, each subject's values gathered), direct and adjoint;
- torchode dopri5 per sample (if installed), at latent_ode's tolerances and at tight ones, so
  each fixed grid has a torchode row of equal or larger error to be compared with.

Error: max |z - z_ref| over the batch's query times, forward solve, against Dopri5Solver at
rtol=atol=1e-8 in float64. Repeats are interleaved across solvers, medians reported. A config
whose pilot step exceeds ``--cap`` seconds is reported as "> cap s" (a lower bound for the ratios).

Each row also gets the step's FLOPs (torch's FlopCounterMode over forward + backward) and the
field's share computed from the layer sizes x the function-evaluation count x 3 (forward and
the two backward products), and a roofline line against a large ``torch.mm`` in the same run.
The summary compares the default grid with the union-of-times adjoint and every fixed grid
with the fastest torchode row of equal or larger error (the issue's goals).

    .venv/bin/python scripts/bench_train.py [--batches 32 256 1024] [--repeats 3] [--threads 1]
        [--cap 60] [--device cpu|cuda] [--tf32] [--dtype bfloat16] [--cuda-graphs]
        [--json out.json] [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import signal
import statistics
import time

import torch
from torch import Tensor, nn

import benchlib

from twinode.data.collate import Batch
from twinode.models.twin import PatientTwin
from twinode.solvers import Dopri5Solver, FixedGridSolver
from twinode.training.lit_module import TwinLitModule

D, S, C = 4, 3, 1  # measurements, statics, interventions (the synthetic ICU spec's sizes)
RTOL, ATOL = 1e-3, 1e-4  # latent_ode's tolerances, for every adaptive solver here


def irregular_batch(B: int, gen: torch.Generator, device: str, with_doses: bool = False) -> Batch:
    """20-50 observations per patient over 48 h on a 1-minute grid; first half history."""
    n_obs = torch.randint(20, 51, (B,), generator=gen)
    n_hist = n_obs // 2
    N, Q = int(n_hist.max()), int((n_obs - n_hist).max())
    hist_t, tgt_t = torch.zeros(B, N), torch.zeros(B, Q)
    hist_m, tgt_m = torch.zeros(B, N, D), torch.zeros(B, Q, D)
    for b in range(B):
        t = (torch.randperm(48 * 60, generator=gen)[: int(n_obs[b])].sort().values.float() / 60.0)
        h, k = int(n_hist[b]), int(n_obs[b]) - int(n_hist[b])
        hist_t[b, :h], hist_t[b, h:] = t[:h], t[h - 1]
        tgt_t[b, :k], tgt_t[b, k:] = t[h:], t[-1]
        hist_m[b, :h] = (torch.rand(h, D, generator=gen) < 0.5).float()
        tgt_m[b, :k] = (torch.rand(k, D, generator=gen) < 0.5).float()
    doses = torch.zeros(B, 2, 4)
    doses[:, :, 0] = torch.rand(B, 2, generator=gen) * 48.0  # time (h)
    if with_doses:  # boluses make the field jump at the dose time, which every solver's error then reflects
        doses[:, :, 2] = torch.rand(B, 2, generator=gen)  # amount, channel 0
    b = Batch(subject_id=torch.arange(B), hist_t=hist_t, hist_x=torch.randn(B, N, D, generator=gen) * hist_m,
              hist_m=hist_m, hist_len=n_hist.long(), tgt_t=tgt_t, tgt_x=torch.randn(B, Q, D, generator=gen) * tgt_m,
              tgt_m=tgt_m, doses=doses, static=torch.randn(B, S, generator=gen), static_m=torch.ones(B, S),
              outcome=torch.full((B,), float("nan")), anchor=hist_t.gather(1, (n_hist - 1).unsqueeze(1)).squeeze(1))
    return b.to(device)


def each_direction(z0: Tensor, t0: Tensor, tq: Tensor, solve) -> Tensor:
    """States at query times ``tq [B, Q]`` around the anchors ``t0``: each direction (after,
    before) is one batched ``solve(sign, tau)`` with ``tau = |tq - t0| >= 0`` on that side (0
    elsewhere) returning ``[B, Q, L]``; queries at the anchor keep ``z0``."""
    rel = tq - t0.unsqueeze(1)
    out = z0.unsqueeze(1).expand(*rel.shape, z0.shape[1])
    for sign in (1.0, -1.0):
        side = rel * sign > 0
        if bool(side.any()):
            out = torch.where(side.unsqueeze(-1), solve(sign, (rel * sign).clamp(min=0)), out)
    return out


class UnionTimesSolver(nn.Module):
    """latent_ode-style batching: one torchdiffeq solve over the sorted union of every subject's
    (anchor-relative) query times, per direction, then each subject's values gathered."""

    def __init__(self, field: nn.Module, adjoint: bool = False):
        super().__init__()
        self.field, self.adjoint = field, adjoint

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        import torchdiffeq

        def solve(sign: float, tau: Tensor) -> Tensor:
            grid, idx = torch.unique(torch.cat([tau.new_zeros(1), tau.flatten()]), sorted=True, return_inverse=True)
            fn = _Func(lambda t, z: sign * self.field(t0 + sign * t, z, doses, s), self.field)
            kw = dict(rtol=RTOL, atol=ATOL, method="dopri5")
            sol = (torchdiffeq.odeint_adjoint(fn, z0, grid, adjoint_params=tuple(self.field.parameters()) + (s,), **kw)
                   if self.adjoint else torchdiffeq.odeint(fn, z0, grid, **kw))  # [T, B, L]
            where = idx[1:].view_as(tau)  # each query's position in the union
            return sol[where, torch.arange(tau.shape[0], device=tau.device).unsqueeze(1)]  # [B, Q, L]

        return each_direction(z0, t0, tq, solve)


class _Func(nn.Module):
    def __init__(self, f, field: nn.Module):
        super().__init__()
        self.f, self.field = f, field  # field registered so the adjoint sees its parameters

    def forward(self, t, z):
        return self.f(t, z)


class TorchodeSolver(nn.Module):
    """torchode dopri5 with per-sample step control; each direction one batched solve."""

    def __init__(self, field: nn.Module, rtol: float = RTOL, atol: float = ATOL):
        super().__init__()
        self.field, self.rtol, self.atol = field, rtol, atol

    def forward(self, z0: Tensor, t0: Tensor, tq: Tensor, doses: Tensor, s: Tensor) -> Tensor:
        import torchode as to

        def solve(sign: float, tau: Tensor) -> Tensor:
            tau, perm = tau.sort(1)
            t_eval = torch.cat([tau.new_zeros(tau.shape[0], 1), tau], 1)
            term = to.ODETerm(lambda t, z: sign * self.field(t0 + sign * t, z, doses, s))
            solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=self.atol, rtol=self.rtol, term=term))
            problem = to.InitialValueProblem(y0=z0, t_start=t_eval[:, 0], t_end=t_eval[:, -1].clamp(min=1e-3), t_eval=t_eval)
            ys = solver.solve(problem).ys[:, 1:]
            return torch.empty_like(ys).scatter(1, perm.unsqueeze(-1).expand_as(ys), ys)

        return each_direction(z0, t0, tq, solve)


TIGHT = 1e-6  # torchode's tolerance for rows as accurate as the default 1 h grid


def variants() -> dict:
    return {
        "rk4 grid 1 h (default)": functools.partial(FixedGridSolver, method="rk4", step=1.0),
        "rk4 grid 2 h": functools.partial(FixedGridSolver, method="rk4", step=2.0),
        "rk4 grid 3 h": functools.partial(FixedGridSolver, method="rk4", step=3.0),
        "rk4 grid 2 h, scripted": lambda field: torch.jit.script(FixedGridSolver(field, "rk4", 2.0)),
        f"Dopri5Solver per-sample, tol {RTOL:g}": functools.partial(Dopri5Solver, rtol=RTOL, atol=ATOL, max_steps=10000),
        "torchdiffeq dopri5, union of times": functools.partial(UnionTimesSolver, adjoint=False),
        "torchdiffeq dopri5, union of times, adjoint": functools.partial(UnionTimesSolver, adjoint=True),
        f"torchode dopri5 per-sample, tol {RTOL:g}": TorchodeSolver,
        f"torchode dopri5 per-sample, tol {TIGHT:g}": functools.partial(TorchodeSolver, rtol=TIGHT, atol=TIGHT),
    }


def compiled_variant(device: str):
    """The default grid under torch.compile: CUDA graphs (mode "reduce-overhead") on a GPU."""
    mode = "reduce-overhead" if device.startswith("cuda") else "default"

    def make(field):
        return torch.compile(FixedGridSolver(field, "rk4", 1.0), mode=mode)

    return f"rk4 grid 1 h, torch.compile({mode})", make


def make_twin(latent: int, hidden: int, device: str) -> PatientTwin:
    torch.manual_seed(0)
    twin = PatientTwin(D, S, C, latent_dim=latent, hidden=hidden, encoder_hidden=64)
    nn.init.normal_(twin.solver.field.out.weight, std=0.05)  # non-trivial dynamics (training init is near-still)
    return twin.to(device)


def with_solver(twin: PatientTwin, make) -> TwinLitModule:
    tw = copy.deepcopy(twin)
    tw.solver = make(field=tw.solver.field)
    return TwinLitModule(tw)


def solve_inputs(lit: TwinLitModule, b: Batch):
    tw = lit.twin
    s_emb = tw.embed_static(b.static, b.static_m)
    z, _ = tw.encode(b.hist_t, b.hist_x, b.hist_m, b.hist_len, s_emb)
    return z, b.anchor, torch.cat([b.hist_t, b.tgt_t], 1), s_emb


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def _failed(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"


def capped(cap_s: float, fn, *args):
    """``(fn(*args), None)``, or ``(None, status)`` where it ran past ``cap_s`` seconds (SIGALRM, or
    finished later than that) or raised: a solver that cannot run is reported, not fatal."""
    signal.alarm(int(cap_s))
    start = time.perf_counter()
    try:
        value = fn(*args)
    except Timeout:
        return None, f"> {cap_s:g} s"
    except Exception as exc:  # noqa: BLE001
        return None, _failed(exc)
    finally:
        signal.alarm(0)
    if time.perf_counter() - start > cap_s:
        return None, f"> {cap_s:g} s"
    return value, None


def solve_error(lit: TwinLitModule, z0, t0, tq, doses, s_emb, ref: Tensor) -> float:
    """Largest absolute deviation of ``lit``'s float32 solve from the float64 reference."""
    with torch.no_grad():
        z = lit.twin.solver(z0.float(), t0.float(), tq.float(), doses, s_emb.float())
    return float((z.double() - ref).abs().max())


def train_step(lit: TwinLitModule, b: Batch, device: str, dtype: torch.dtype | None = None) -> float:
    lit.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with benchlib.autocast(device, dtype):
        loss = lit._objective(b, sample=True)["loss"]
    loss.backward()
    benchlib.sync(device)
    return time.perf_counter() - start


def step_flops(lit: TwinLitModule, b: Batch, device: str, dtype) -> dict:
    """Counted FLOPs of one step, and the field's share from its layer sizes x evaluations x 3,
    both from the same step."""
    field = lit.twin.solver.field
    if isinstance(field, torch.jit.ScriptModule):  # its calls cannot be counted from Python
        return {"flops": benchlib.count_flops(lambda: train_step(lit, b, device, dtype)), "field_flops": None,
                "field_rows": None}
    with benchlib.CallCounter(field) as calls:
        counted = benchlib.count_flops(lambda: train_step(lit, b, device, dtype))
    return {"flops": counted, "field_flops": 3 * benchlib.linear_flops(field, 1) * calls.rows, "field_rows": calls.rows}


def run(args, on_batch=None) -> list[dict]:
    """Rows for every batch size; ``on_batch(rows so far)`` after each one."""
    dev = args.device
    dtype = args.autocast
    twin = make_twin(args.latent, args.hidden, dev)
    table_ = variants()
    if args.cuda_graphs:
        name, make = compiled_variant(dev)
        table_[name] = make
    names = [n for n in table_ if (not args.only or any(o in n for o in args.only))
             and not any(o in n for o in args.skip or ())]
    try:
        import torchode  # noqa: F401
    except ImportError:
        names = [n for n in names if "torchode" not in n]
    rows = []
    signal.signal(signal.SIGALRM, _alarm)
    for B in args.batches:
        b = irregular_batch(B, torch.Generator().manual_seed(B), dev, args.doses)
        lits = {n: with_solver(twin, table_[n]) for n in names}
        # Reference solve: float64 Dopri5Solver on the same field and inputs, on the CPU (thousands
        # of tiny adaptive steps: on a GPU each is a kernel launch, and it alone outran --quick).
        with torch.no_grad():
            ref_lit = with_solver(twin, functools.partial(Dopri5Solver, rtol=1e-8, atol=1e-8, max_steps=100000))
            ref_lit.double().cpu()
            bd = Batch(**{k: (v.double() if v.is_floating_point() else v) for k, v in vars(b.to("cpu")).items()})
            z0, t0, tq, s = solve_inputs(ref_lit, bd)
            ref = ref_lit.twin.solver(z0, t0, tq, bd.doses, s).to(dev)
            z0, t0, tq, s = (v.to(dev) for v in (z0, t0, tq, s))
        errors, times, status, flops = {}, {n: [] for n in lits}, {}, {}
        for n, lit in lits.items():
            # the error's solve is capped as the pilot step is
            errors[n], status[n] = capped(args.cap, solve_error, lit, z0, t0, tq, b.doses, s, ref)
            if status[n] is None and ("torch.compile" in n or "scripted" in n):
                # compiled (scripted: profiled, fused) in the first steps: not part of the cap
                try:
                    for _ in range(2):
                        train_step(lit, b, dev, dtype)
                except Exception as exc:  # noqa: BLE001
                    status[n] = _failed(exc)
            if status[n] is None:
                _, status[n] = capped(args.cap, train_step, lit, b, dev, dtype)  # pilot, also the warm-up
        status = {n: st for n, st in status.items() if st is not None}
        live = [n for n in lits if n not in status]
        for n in live:
            try:
                flops[n] = step_flops(lits[n], b, dev, dtype)
            except Exception:  # noqa: BLE001 - e.g. the adjoint's own autograd calls under the FLOP counter
                pass
        for _ in range(args.repeats):  # interleaved, so load changes hit every solver alike
            for n in live:
                times[n].append(train_step(lits[n], b, dev, dtype))
        for n in lits:
            sec = statistics.median(times[n]) if times[n] else None
            f = flops.get(n, {})
            rows.append({"name": n, "batch": B, "seconds": sec, "per_second": B / sec if sec else None,
                         "error": errors.get(n), "status": status.get(n, "ok"), "repeats": len(times[n]),
                         "flops": f.get("flops"), "field_flops": f.get("field_flops"), "field_rows": f.get("field_rows"),
                         "cap_s": args.cap})
        for r in rows[-len(lits):]:  # each batch's rows as soon as they are in: a run cut short keeps them
            sec = f"{r['seconds']:.4g} s" if r["seconds"] else "-"
            print(f"  batch {B}  {r['name']:<40s} {sec:>12s}  {r['status']}", flush=True)
        print(f"batch {B} done (load {os.getloadavg()[0]:.1f})", flush=True)
        if on_batch is not None:
            on_batch(rows)
    return rows


def goals(rows: list[dict], peak: float) -> list[str]:
    """The issue's ratios per batch: default grid vs the union-of-times adjoint, each fixed grid vs
    the fastest torchode row of equal or larger error, and each fixed grid's roofline."""
    lines = []
    for B in sorted({r["batch"] for r in rows}):
        at = {r["name"]: r for r in rows if r["batch"] == B}
        ours = at.get("rk4 grid 1 h (default)")
        adj = at.get("torchdiffeq dopri5, union of times, adjoint")
        if ours and ours["seconds"] and adj:
            if adj["seconds"]:
                lines.append(f"batch {B}: union-of-times adjoint / default grid = {adj['seconds'] / ours['seconds']:.0f}x")
            elif adj["status"].startswith(">"):
                lines.append(f"batch {B}: union-of-times adjoint / default grid > {adj['cap_s'] / ours['seconds']:.0f}x "
                             f"(adjoint step over the {adj['cap_s']:g} s cap)")
        tode = [r for r in at.values() if r["name"].startswith("torchode") and r["seconds"] and r["error"] is not None]
        for r in at.values():
            if not r["name"].startswith("rk4") or not r["seconds"] or r["error"] is None:
                continue
            worse = [t for t in tode if t["error"] >= r["error"]]
            if worse:
                t = min(worse, key=lambda t: t["seconds"])
                lines.append(f"batch {B}: {r['name']} (error {r['error']:.1e}) vs {t['name']} (error {t['error']:.1e}): "
                             f"{t['seconds'] / r['seconds']:.2f}x torchode's throughput")
            else:
                lines.append(f"batch {B}: {r['name']} (error {r['error']:.1e}): no torchode row of equal or larger error")
        for r in at.values():
            if r["name"].startswith("rk4") and r["seconds"] and r.get("flops") and peak:
                lines.append(f"batch {B}: {r['name']} " + benchlib.roofline_line(r["flops"], r["seconds"], peak))
    return lines


def table(rows: list[dict], peak: float | None = None) -> str:
    lines = ["| solver | batch | step ms (median) | patients/s | max abs error | GFLOP/step | % of matmul | status |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ms = f"{1e3 * r['seconds']:.1f}" if r["seconds"] else "-"
        ps = f"{r['per_second']:.0f}" if r["per_second"] else "-"
        err = f"{r['error']:.1e}" if r["error"] is not None else "-"
        gf = f"{r['flops'] / 1e9:.2f}" if r.get("flops") else "-"
        pct = f"{100 * r['flops'] / r['seconds'] / peak:.0f}" if (r.get("flops") and r["seconds"] and peak) else "-"
        lines.append(f"| {r['name']} | {r['batch']} | {ms} | {ps} | {err} | {gf} | {pct} | {r['status']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.common_args(ap)
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cap", type=float, default=60.0, help="seconds a pilot step may take before a config counts as infeasible")
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--only", nargs="*", help="run only solvers whose name contains one of these")
    ap.add_argument("--doses", action="store_true", help="give every patient two boluses (default: zero amounts, smooth field)")
    ap.add_argument("--skip", nargs="*", help="drop solvers whose name contains one of these")
    benchlib.precision_args(ap)
    ap.add_argument("--cuda-graphs", action="store_true",
                    help='add the default grid under torch.compile (mode "reduce-overhead": CUDA graphs on a GPU)')
    ap.add_argument("--smoke", action="store_true", help="batch 4, 1 repeat, small model: checks the script runs")
    args = ap.parse_args(argv)
    if args.quick:  # about a minute on 2 CPU cores
        args.batches, args.repeats, args.cap = [32, 256], 2, min(args.cap, 5.0)
        if args.device == "cuda":
            # A GPU is launch-bound on these small ops: the third-party adaptive rows alone outran
            # two minutes at batch 32 on an H200 (docs/benchmarks.md); quick keeps our solvers, at
            # the batches a GPU is for.
            args.batches = [256, 1024]
            args.only = args.only or ["rk4 grid", "Dopri5Solver"]
    if args.smoke:
        args.batches, args.repeats, args.latent, args.hidden, args.cap = [4], 1, 8, 16, min(args.cap, 20.0)
    torch.set_num_threads(args.threads)
    args.autocast = benchlib.apply_precision(args)
    info = benchlib.machine_info(args.threads, args.device)
    info.update({"dtype": args.dtype, "tf32": args.tf32, "latent": args.latent, "hidden": args.hidden})
    peak = benchlib.matmul_flops(args.device)
    def partial(rows: list[dict]) -> None:  # a run stopped by a timeout still leaves its finished batches
        if args.json:
            benchlib.write_json(args.json, info, rows, {"partial": True})

    rows = run(args, partial)
    info["loadavg_end"] = os.getloadavg()
    info["matmul_flops"] = peak
    print(json.dumps(info))
    print(table(rows, peak))
    summary = goals(rows, peak)
    print("\n".join(summary))
    if args.json:
        benchlib.write_json(args.json, info, rows, {"goals": summary})


if __name__ == "__main__":
    main()

"""Shared plumbing of the bench_*.py scripts: machine description, measured matmul FLOP/s,
FLOP counts (counted and analytic), the roofline line, common flags, JSON rows and tables.

Every script writes ``{"machine": {...}, "rows": [...], ...}`` where each row holds at least
``name``, ``batch``, ``seconds``, ``per_second`` and ``error`` (``None`` where a figure does not
apply), so results from different scripts and machines can be compared by one reader.

    python scripts/benchlib.py summary results/*.json   # compact table of JSON results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

ROW_KEYS = ("name", "batch", "seconds", "per_second", "error")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int, device: str) -> dict:
    """What a figure was measured on: CPU, core count, versions, threads, load, GPU."""
    info = {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": threads, "device": device,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def sync(device: str) -> None:
    """Waits for queued GPU work, so wall time covers it (a no-op on CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def matmul_flops(device: str = "cpu", n: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """FLOP/s of one ``n x n`` ``torch.mm`` measured now: best of ``repeats`` after a warm-up.

    The reference of the roofline line: what this machine's matmul reaches with the current
    thread count, dtype and load, measured in the same process as the figure it judges.
    """
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    torch.mm(a, b)  # warm-up: allocator, kernels, thread pool
    sync(device)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn()`` as torch's FlopCounterMode counts them (matrix products
    and convolutions, forward and backward if ``fn`` runs both; elementwise ops count 0)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count_ops(fn: Callable[[], object]) -> dict:
    """Torch ops dispatched by one call of ``fn()`` (TorchScript code included) and the elements
    their outputs hold (view ops excluded). For elementwise code, which FlopCounterMode counts
    as 0, ``elements`` is a FLOP estimate (about one per output element) and ``ops`` the
    dispatch count that bounds small batches."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    class _Counter(TorchDispatchMode):
        ops = 0
        elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.ops += 1
            if not getattr(func, "is_view", False):
                self.elements += sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
            return out

    with _Counter() as counter:
        fn()
    return {"ops": counter.ops, "elements": counter.elements}


def linear_flops(module: nn.Module, batch: int) -> int:
    """Analytic forward FLOPs of ``module`` on ``batch`` rows: ``2 * in * out * batch`` summed
    over every nn.Linear, nn.GRUCell and nn.GRU inside it (biases and activations not counted,
    as FlopCounterMode does). For nn.GRU, ``batch`` counts (sequence, time step) pairs."""
    total = 0
    for m in module.modules():
        if isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features * batch
        elif isinstance(m, nn.GRUCell):
            total += 2 * 3 * m.hidden_size * (m.input_size + m.hidden_size) * batch
        elif isinstance(m, nn.GRU):
            dirs = 2 if m.bidirectional else 1
            for layer in range(m.num_layers):
                inp = m.input_size if layer == 0 else m.hidden_size * dirs
                total += dirs * 2 * 3 * m.hidden_size * (inp + m.hidden_size) * batch
    return total


class CallCounter:
    """Counts a module's evaluations and the rows they saw (``shape[0]`` of the first tensor
    argument): the function-evaluation count that multiplies ``linear_flops(module, 1)``.

    Counts calls of the instance's ``methods`` (``forward`` and, for fields with a
    precomputed drive, ``given_drive``); a counted method calling another counts once.

        with CallCounter(field) as calls:
            solver(...)
        flops = linear_flops(field, 1) * calls.rows
    """

    def __init__(self, module: nn.Module, methods: Sequence[str] = ("forward", "given_drive")):
        self.module, self.methods = module, [m for m in methods if callable(getattr(type(module), m, None))]
        self.calls, self.rows, self._depth = 0, 0, 0

    def _wrap(self, method):
        def counted(*args, **kwargs):
            if self._depth == 0:
                self.calls += 1
                first = next((a for a in args if isinstance(a, torch.Tensor) and a.dim() > 0), None)
                self.rows += int(first.shape[0]) if first is not None else 1
            self._depth += 1
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
        return counted

    def __enter__(self) -> "CallCounter":
        for name in self.methods:  # instance attributes shadow the class's methods until __exit__
            self.module.__dict__[name] = self._wrap(getattr(self.module, name))
        return self

    def __exit__(self, *exc) -> None:
        for name in self.methods:
            self.module.__dict__.pop(name, None)


def si(value: float) -> tuple[str, str]:
    """``(number, prefix)`` with three significant figures: 3.1e9 -> ("3.1", "G")."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}", prefix
    return f"{value:.3g}", ""


def roofline(step_flops: float, seconds: float, peak_flops: float) -> dict:
    """Achieved FLOP/s of a step and its fraction of the measured matmul FLOP/s."""
    if not (seconds > 0 and peak_flops > 0):
        raise ValueError(f"roofline needs positive seconds and peak FLOP/s, got {seconds!r} and {peak_flops!r}")
    achieved = step_flops / seconds
    return {"flops": float(step_flops), "seconds": float(seconds), "achieved_flops": achieved,
            "peak_flops": float(peak_flops), "fraction": achieved / peak_flops}


def roofline_line(step_flops: float, seconds: float, peak_flops: float, unit: str = "step") -> str:
    """"roofline: 3.1 GFLOP/step / 0.120 s = 25.8 GFLOP/s = 40% of the measured matmul 64.8 GFLOP/s"."""
    r = roofline(step_flops, seconds, peak_flops)
    f, fp = si(r["flops"])
    a, ap = si(r["achieved_flops"])
    p, pp = si(r["peak_flops"])
    pct = 100.0 * r["fraction"]
    pct_s = f"{pct:.0f}%" if pct >= 10 else f"{pct:.2g}%"
    return (f"roofline: {f} {fp}FLOP/{unit} / {seconds:.3f} s = {a} {ap}FLOP/s = "
            f"{pct_s} of the measured matmul {p} {pp}FLOP/s")


def common_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags every bench script shares; the script calls ``torch.set_num_threads(args.threads)``."""
    ap.add_argument("--json", metavar="PATH", help="write machine info and result rows here")
    ap.add_argument("--quick", action="store_true", help="a reduced run that finishes within two minutes")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads (1 is fastest for these small ops; 2 on a busy 2-core box oversubscribes)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    return ap


AUTOCAST = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def precision_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--dtype`` (autocast of the timed work) and ``--tf32``; see :func:`apply_precision`."""
    ap.add_argument("--dtype", default="float32", choices=list(AUTOCAST),
                    help="autocast dtype of the timed work (bfloat16 for a GPU run; float32 = no autocast)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls (CUDA)")
    return ap


def apply_precision(args: argparse.Namespace) -> torch.dtype | None:
    """Sets the TF32 switches when asked; returns the autocast dtype (None: no autocast)."""
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return AUTOCAST[args.dtype]


def autocast(device: str, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device``'s type, a no-op context when ``dtype`` is None."""
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype, enabled=dtype is not None)


def _plain(value):
    """JSON-safe: non-finite floats become None (strict JSON has no NaN), tuples lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return _plain(value.item())
    return value


def check_rows(rows: Sequence[dict]) -> None:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is a {type(row).__name__}, not a dict")
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row {i} ({row.get('name', 'unnamed')!r}) lacks key(s) {', '.join(missing)}; "
                             f"every row needs {', '.join(ROW_KEYS)} (None where a figure does not apply)")


def write_json(path: str | Path, machine: dict, rows: Sequence[dict], extra: dict | None = None) -> None:
    """Writes ``{"machine": ..., "rows": [...], **extra}``; every row must hold ROW_KEYS."""
    check_rows(rows)
    doc = {"machine": machine, "rows": list(rows)}
    for k, v in (extra or {}).items():
        if k in doc:
            raise ValueError(f"extra key {k!r} would overwrite the report's {k!r}")
        doc[k] = v
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(doc), indent=2, allow_nan=False) + "\n")


def _cell(value, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt:
        return format(value, fmt)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Iterable[dict], columns: Sequence) -> str:
    """A markdown table. Each column is a row key, or ``(header, key)``, or ``(header, key, fmt)``
    where ``key`` may be a function of the row and ``fmt`` a format spec; missing values show
    as "-". Columns whose values are all numbers are right-aligned."""
    rows = list(rows)
    cols = []
    for c in columns:
        header, key, fmt = (c, c, None) if isinstance(c, str) else (tuple(c) + (None,))[:3]
        cols.append((header, key, fmt))
    values = [[(key(r) if callable(key) else r.get(key)) for _, key, _ in cols] for r in rows]
    numeric = [all(isinstance(v[j], (int, float)) and not isinstance(v[j], bool) for v in values if v[j] is not None)
               for j in range(len(cols))]
    lines = ["| " + " | ".join(h for h, _, _ in cols) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    for v in values:
        lines.append("| " + " | ".join(_cell(x, fmt) for x, (_, _, fmt) in zip(v, cols)) + " |")
    return "\n".join(lines)


SUMMARY_COLUMNS = ("name", "batch", ("seconds", "seconds", ".4g"), ("per second", "per_second", ".4g"),
                   ("error", "error", ".2e"))


def summary(paths: Sequence[str]) -> str:
    """One compact table per JSON report (unreadable files are named, not fatal)."""
    out = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text())
            m = doc.get("machine", {})
            where = m.get("gpu") or m.get("cpu", "?")
            out.append(f"## {Path(p).stem} ({where}, {m.get('device', '?')})\n")
            out.append(markdown_table(doc.get("rows", []), SUMMARY_COLUMNS))
            for line in doc.get("roofline", []) if isinstance(doc.get("roofline"), list) else []:
                out.append(str(line))
        except (OSError, ValueError, AttributeError) as exc:
            out.append(f"## {Path(p).stem}: unreadable ({type(exc).__name__}: {exc})")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="benchmark report helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary", help="print a compact table of each JSON report")
    s.add_argument("paths", nargs="+")
    args = ap.parse_args(argv)
    print(summary(args.paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

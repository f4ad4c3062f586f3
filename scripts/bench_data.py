"""Data pipeline benchmark on PhysioNet 2012 set A: import, first and cached load, DataLoader rate.

    python scripts/bench_data.py [--data ../shared/data/physionet2012] [--write docs/benchmarks.md]

Writes a measured table under the "## Data" heading of docs/benchmarks.md (other sections
of that file are left as they are).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from twinode.cli.data import load_spec
from twinode.data.datamodule import TwinDataModule
from twinode.data.importers.physionet2012 import import_physionet2012
from twinode.data.sources import MedsSource

REPO = Path(__file__).resolve().parents[1]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def loader_rate(source, workers: int, batch_size: int, epochs: int = 3) -> float:
    """Best epoch rate over ``epochs``; workers persist, so later epochs exclude their start-up."""
    dm = TwinDataModule(source, horizon_h=24, batch_size=batch_size, num_workers=workers)
    dm.setup()
    loader = dm.train_dataloader()
    rates = []
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        for batch in loader:
            n += len(batch)
        rates.append(n / (time.perf_counter() - t0))
    return max(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "physionet2012"))
    ap.add_argument("--write", default=str(REPO / "docs" / "benchmarks.md"))
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    data = Path(args.data)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, cache_dir = Path(tmp) / "pn", Path(tmp) / "cache"
        report, t = timed(lambda: import_physionet2012(data / "set-a.tar.gz", data / "Outcomes-a.txt", out))
        rows.append(("import set A -> MEDS", f"{t:.2f} s", f"{report.records} records, {report.events:,} events"))
        spec = load_spec("physionet2012")
        first, t = timed(lambda: MedsSource(str(out), spec, cache_dir=str(cache_dir)).load())
        rows.append(("first load (read, validate, align, tensorize, cache)", f"{t:.2f} s", f"{len(first.records)} subjects"))
        times = [timed(lambda: MedsSource(str(out), spec, cache_dir=str(cache_dir)).load())[1] for _ in range(3)]
        rows.append(("second load (cache hit, incl. fingerprint)", f"{min(times):.2f} s", f"best of 3; max {max(times):.2f} s"))
        source = MedsSource(str(out), spec, cache_dir=str(cache_dir))
        for workers in (0, 2):
            rate = loader_rate(source, workers, args.batch_size)
            rows.append((f"DataLoader train epoch, batch {args.batch_size}, {workers} workers", f"{rate:,.0f} patients/s",
                         "train split (3,196 patients), random cuts + collate; best of 3 epochs"))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"
    table = ["| step | time / rate | notes |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    section = ("## Data\n\n"
               f"Machine: {machine}. Command: `python scripts/bench_data.py` "
               f"(PhysioNet 2012 set A, 4,000 stays; spec `configs/data/physionet2012.yaml`; "
               "the 2 cores were shared with other jobs).\n\n" + "\n".join(table) + "\n")
    print(section)
    write_section(Path(args.write), section)


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the "## Data" section, leaving the others untouched."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\nMeasured tables; each section names its machine and command.\n"
    pattern = re.compile(r"^## Data\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    sys.exit(main())

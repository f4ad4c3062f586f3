"""Data pipeline benchmark on PhysioNet 2012 set A: import, first and cached load, DataLoader rate.

    python scripts/bench_data.py [--data ../shared/data/physionet2012] [--write docs/benchmarks.md]
        [--records N] [--source auto|physionet|synthetic] [--json out.json] [--quick] [--device cpu|cuda]

A full PhysioNet run writes a measured table under the "## Data" heading of docs/benchmarks.md
(other sections of that file are left as they are); ``--quick`` (the first 1,000 records of set
A) and synthetic runs write there only when ``--write`` is given. Without the PhysioNet files
(``--source auto``) the embedded synthetic cohort stands in: generate, tensorize, DataLoader.
On ``--device cuda`` the DataLoader rows include copying each batch to the GPU.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

import benchlib
from twinode.data.spec_files import load_spec
from twinode.data.datamodule import TwinDataModule
from twinode.data.importers.physionet2012 import import_physionet2012
from twinode.data.sources import MedsSource, SyntheticICUSource
from twinode.data.tensorize import tensorize

REPO = Path(__file__).resolve().parents[1]
QUICK_RECORDS = 1000


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def row(name: str, seconds: float, patients: int, notes: str, batch: int | None = None, **extra) -> dict:
    return {"name": name, "batch": batch, "seconds": seconds, "per_second": patients / seconds, "error": None,
            "patients": patients, "notes": notes, **extra}


def loader_epochs(source, workers: int, batch_size: int, horizon_h: float, epochs: int, device: str) -> tuple[float, int]:
    """Best epoch time over ``epochs`` and the patients per epoch. Workers are not persistent
    (the datamodule's choice), so every epoch includes their start-up."""
    dm = TwinDataModule(source, horizon_h=horizon_h, batch_size=batch_size, num_workers=workers)
    dm.setup()
    loader = dm.train_dataloader()
    best, n = float("inf"), 0
    for _ in range(epochs):
        n, t0 = 0, time.perf_counter()
        for batch in loader:
            if device != "cpu":
                batch = batch.to(device)
            n += len(batch)
        benchlib.sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, n


def loader_rows(source, args, horizon_h: float, split_note: str) -> list[dict]:
    rows = []
    for workers in args.workers:
        sec, n = loader_epochs(source, workers, args.batch_size, horizon_h, args.epochs, args.device)
        to_gpu = f", copied to {args.device}" if args.device != "cpu" else ""
        rows.append(row(f"DataLoader train epoch, batch {args.batch_size}, {workers} workers", sec, n,
                        f"{split_note} ({n:,} patients), random cuts + collate{to_gpu}; best of {args.epochs} epochs",
                        batch=args.batch_size, workers=workers))
    return rows


def subset_archive(archive: Path, n: int, out: Path) -> Path:
    """The first ``n`` record files of ``archive`` as a new tar.gz (a quick run's cohort)."""
    kept = 0
    with tarfile.open(archive, "r:*") as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            if kept >= n:
                break
            if member.isfile() and member.name.endswith(".txt"):
                dst.addfile(member, src.extractfile(member))
                kept += 1
    return out


def physionet_rows(args, data: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out, cache_dir, archive = Path(tmp) / "pn", Path(tmp) / "cache", data / "set-a.tar.gz"
        if args.records:
            archive = subset_archive(archive, args.records, Path(tmp) / "subset.tar.gz")
        report, t = timed(lambda: import_physionet2012(archive, data / "Outcomes-a.txt", out))
        rows.append(row("import set A -> MEDS", t, report.records, f"{report.records} records, {report.events:,} events",
                        events=report.events))
        spec = load_spec("physionet2012")
        first, t = timed(lambda: MedsSource(str(out), spec, cache_dir=str(cache_dir)).load())
        rows.append(row("first load (read, validate, align, tensorize, cache)", t, len(first.records),
                        f"{len(first.records)} subjects"))
        times = [timed(lambda: MedsSource(str(out), spec, cache_dir=str(cache_dir)).load())[1] for _ in range(3)]
        rows.append(row("second load (cache hit, incl. fingerprint)", min(times), len(first.records),
                        f"best of 3; max {max(times):.2f} s"))
        source = MedsSource(str(out), spec, cache_dir=str(cache_dir))
        rows += loader_rows(source, args, horizon_h=24, split_note="train split")
    return rows


def synthetic_rows(args) -> list[dict]:
    source = SyntheticICUSource(n_patients=args.patients)
    loaded, t = timed(source.load)
    n = loaded.events["subject_id"].n_unique()
    rows = [row(f"generate synthetic cohort ({args.patients} patients)", t, n, f"{loaded.events.height:,} events")]
    (records, _), t = timed(lambda: tensorize(loaded.events, loaded.spec, source=loaded.name))
    rows.append(row("tensorize (align, tensorize)", t, len(records), f"{len(records)} subjects"))
    rows += loader_rows(source, args, horizon_h=12, split_note="train split, synthetic cohort")
    return rows


def table(rows: list[dict]) -> str:
    def rate(r):
        return f"{r['seconds']:.2f} s" if not r["name"].startswith("DataLoader") else f"{r['per_second']:,.0f} patients/s"
    return benchlib.markdown_table(rows, [("step", "name"), ("time / rate", rate), ("notes", "notes")])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO / ".." / "shared" / "data" / "physionet2012"))
    ap.add_argument("--source", choices=["auto", "physionet", "synthetic"], default="auto",
                    help="auto: PhysioNet set A when --data holds it, else the embedded synthetic cohort")
    ap.add_argument("--records", type=int, help=f"import only the first N records of set A (--quick: {QUICK_RECORDS})")
    ap.add_argument("--patients", type=int, help="synthetic cohort size (default 4000; 400 with --quick)")
    ap.add_argument("--write", help="markdown file whose '## Data' section to replace (default: docs/benchmarks.md "
                                    "for a full PhysioNet run, nothing otherwise)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--epochs", type=int, help="DataLoader epochs, best reported (default 3; 2 with --quick)")
    benchlib.common_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    have_pn = (data / "set-a.tar.gz").is_file() and (data / "Outcomes-a.txt").is_file()
    if args.source == "physionet" and not have_pn:
        sys.exit(f"error: no set-a.tar.gz and Outcomes-a.txt under {data}")
    use_pn = args.source == "physionet" or (args.source == "auto" and have_pn)
    args.records = args.records or (QUICK_RECORDS if args.quick else None)
    args.patients = args.patients or (400 if args.quick else 4000)
    args.epochs = args.epochs or (2 if args.quick else 3)
    machine = benchlib.machine_info(args.threads, args.device)
    rows = physionet_rows(args, data) if use_pn else synthetic_rows(args)
    what = ((f"PhysioNet 2012 set A, first {args.records:,} records" if args.records else "PhysioNet 2012 set A, 4,000 stays")
            + "; spec `src/twinode/configs/data/physionet2012.yaml`") if use_pn else \
        f"embedded synthetic ICU cohort, {args.patients:,} patients" + ("" if args.source == "synthetic" else
                                                                         f", no PhysioNet files under {data}")
    command = "python scripts/bench_data.py" + (" " + " ".join(sys.argv[1:] if argv is None else argv)).rstrip()
    machine_s = (f"{machine['cpu']}, {machine['nproc']} cores, Python {machine['python']}, torch {machine['torch']}, "
                 f"{args.threads} thread(s), load average {machine['loadavg'][0]:.1f} at start")
    section = ("## Data\n\n"
               f"Machine: {machine_s}. Command: `{command}` ({what}).\n\n" + table(rows) + "\n")
    print(section)
    write = args.write or (str(REPO / "docs" / "benchmarks.md") if use_pn and not args.records else None)
    if write:
        write_section(Path(write), section)
    if args.json:
        benchlib.write_json(args.json, machine, rows, extra={
            "command": command, "dataset": what, "loadavg_end": list(os.getloadavg())})


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

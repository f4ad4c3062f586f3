"""bench_solvers, bench_simulator and bench_data run end to end in a tiny configuration and write
the documented JSON rows (their speed is measured by the scripts, not asserted here)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
PHYSIONET = REPO.parent / "shared" / "data" / "physionet2012"


@pytest.fixture
def load(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the scripts import benchlib from beside them

    def _load(name: str):
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return _load


def read_rows(path: Path) -> tuple[dict, dict]:
    doc = json.loads(path.read_text())
    for r in doc["rows"]:
        assert {"name", "batch", "seconds", "per_second", "error"} <= r.keys(), r
        assert r["seconds"] > 0
    return doc, {r["name"]: r for r in doc["rows"]}


def test_bench_solvers_rows_errors_and_roofline(load, tmp_path, capsys):
    out = tmp_path / "solvers.json"
    load("bench_solvers").main(["--batch", "4", "--queries", "3", "--repeats", "1", "--matmul-n", "128",
                                "--only", "rk4", "tol 1e-3", "--json", str(out)])
    doc, rows = read_rows(out)
    assert doc["machine"]["threads"] == 1 and doc["peak_flops"] > 0
    assert set(rows) == {"rk4 grid, step 2 h", "rk4 grid, step 0.5 h", "dopri5 per-sample, tol 1e-3",
                         "torchdiffeq dopri5, tol 1e-3"}
    for r in rows.values():
        assert r["batch"] == 4 and math.isclose(r["per_second"], 4 / r["seconds"])
        assert math.isfinite(r["error"]) and r["field_calls"] > 0
        # FLOPs from layer sizes x evaluations agree with torch's own count of the solve
        assert r["flops"] == r["flops_counted"] > 0
        assert math.isclose(r["fraction"], r["flops"] / r["seconds"] / doc["peak_flops"])
        assert r["roofline"].startswith("roofline: ") and "of the measured matmul" in r["roofline"]
    assert rows["rk4 grid, step 0.5 h"]["error"] < rows["rk4 grid, step 2 h"]["error"]
    assert rows["rk4 grid, step 0.5 h"]["field_calls"] > rows["rk4 grid, step 2 h"]["field_calls"]
    text = capsys.readouterr().out
    assert "| solver | max abs error | median wall (ms) |" in text and text.count("roofline: ") == 4


def test_bench_simulator_rows_and_op_counts(load, tmp_path, capsys):
    out = tmp_path / "sim.json"
    load("bench_simulator").main(["--batch-sizes", "2", "--matmul-n", "64", "--json", str(out)])
    doc, rows = read_rows(out)
    (r,) = rows.values()
    assert r["batch"] == 2 and r["error"] is None and math.isclose(r["per_second"], 2 / r["seconds"])
    assert r["ops"] > 1440 and r["flops"] > r["ops"]  # several ops per simulated minute, each >= 1 element
    assert "| 2 | 1 |" in capsys.readouterr().out


def test_bench_data_synthetic_rows(load, tmp_path):
    out, md = tmp_path / "data.json", tmp_path / "bench.md"
    md.write_text("# Benchmarks\n\n## Data\n\nold\n\n## Other\n\nkept\n")
    load("bench_data").main(["--source", "synthetic", "--patients", "40", "--workers", "0", "--epochs", "1",
                             "--batch-size", "8", "--json", str(out), "--write", str(md)])
    doc, rows = read_rows(out)
    assert list(rows)[:2] == ["generate synthetic cohort (40 patients)", "tensorize (align, tensorize)"]
    assert rows["tensorize (align, tensorize)"]["patients"] == 40
    loader = rows["DataLoader train epoch, batch 8, 0 workers"]
    assert loader["batch"] == 8 and 0 < loader["patients"] < 40  # the train split only
    assert math.isclose(loader["per_second"], loader["patients"] / loader["seconds"])
    text = md.read_text()
    assert "old" not in text and "## Other\n\nkept" in text and "| tensorize (align, tensorize) |" in text


@pytest.mark.shared_data
@pytest.mark.skipif(not (PHYSIONET / "set-a.tar.gz").is_file(), reason="PhysioNet set A not in ../shared/data")
def test_bench_data_physionet_subset(load, tmp_path):
    out = tmp_path / "data.json"
    load("bench_data").main(["--records", "30", "--workers", "0", "--epochs", "1", "--json", str(out)])
    _, rows = read_rows(out)
    assert rows["import set A -> MEDS"]["patients"] == 30
    assert rows["first load (read, validate, align, tensorize, cache)"]["patients"] == 30
    assert (tmp_path / "data.json").exists() and not (tmp_path / "docs").exists()

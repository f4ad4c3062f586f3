"""The benchmark scripts run end to end in their tiny mode and write the documented columns."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_train_smoke_writes_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # the scripts import benchlib from beside them
    out = tmp_path / "train.json"
    # The adjoint and torchode rows are slow even at batch 4; the union-of-times row stands for torchdiffeq.
    load("bench_train").main(["--smoke", "--json", str(out), "--skip", "adjoint", "torchode", "1 h"])
    report = json.loads(out.read_text())
    assert report["machine"]["threads"] == 1 and report["machine"]["nproc"] >= 1
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == {"rk4 grid 2 h", "rk4 grid 3 h", "rk4 grid 2 h, scripted", "Dopri5Solver per-sample, tol 0.001",
                         "torchdiffeq dopri5, union of times"}
    for r in rows.values():
        assert {"name", "batch", "seconds", "per_second", "error", "status"} <= r.keys()
        assert r["batch"] == 4 and r["status"] == "ok", r
        assert r["seconds"] > 0 and math.isclose(r["per_second"], 4 / r["seconds"])
        assert math.isfinite(r["error"]) and r["error"] >= 0
        assert r["flops"] > 0  # counted forward + backward matrix products
    # The field's FLOPs from its layer sizes x evaluations x 3 cannot exceed the whole step's count.
    for name in ("rk4 grid 2 h", "rk4 grid 3 h"):
        assert 0 < rows[name]["field_flops"] <= rows[name]["flops"]
    assert rows["rk4 grid 3 h"]["field_rows"] < rows["rk4 grid 2 h"]["field_rows"]  # fewer evaluations
    assert any("roofline:" in g for g in report["goals"])
    assert "| solver | batch | step ms (median) | patients/s | max abs error | GFLOP/step | % of matmul | status |" in capsys.readouterr().out


def test_bench_infer_smoke_writes_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))
    out = tmp_path / "infer.json"
    load("bench_infer").main(["--smoke", "--json", str(out)])
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    for name in ("TorchScript twin.pt", "eager TwinPredictor"):
        r = rows[name]
        assert r["status"] == "ok" and 0 < r["p50_ms"] <= r["p99_ms"]
        assert r["batch_size"] == 4 and r["batch_per_second"] > 0
    assert rows["torch.compile (eager predictor)"]["status"].startswith("not run")
    report = json.loads(out.read_text())
    assert report["machine"]["matmul_flops"] > 0 and rows["TorchScript twin.pt"]["flops"] > 0
    assert "| variant | p50 ms | p99 ms | batch | batch s | patients/s | status |" in capsys.readouterr().out


def test_bench_train_capped_reports_overruns_and_failures(monkeypatch):
    import signal
    import time

    monkeypatch.syspath_prepend(str(SCRIPTS))
    bench = load("bench_train")
    previous = signal.signal(signal.SIGALRM, bench._alarm)
    try:
        assert bench.capped(5.0, lambda a, b: a + b, 2, 3) == (5, None)
        assert bench.capped(1.0, time.sleep, 3.0) == (None, "> 1 s")  # the alarm stops it

        def broken():
            raise ValueError("no such solver\nmore")

        assert bench.capped(5.0, broken) == (None, "failed: ValueError: no such solver")
        assert signal.alarm(0) == 0  # nothing left armed
    finally:
        signal.signal(signal.SIGALRM, previous)

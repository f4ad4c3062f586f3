"""examples/cpp builds against the torch wheel's libtorch, loads twin.pt and matches Python."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tests.unit.export.conftest import NORMALISER, make_twin
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.export.torchscript import export_twin, load_twin

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "examples" / "cpp"
BUILD = SOURCE / "build"  # cached between runs, ignored by git

needs_toolchain = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("g++") is None and shutil.which("c++") is None,
                                     reason="cmake and a C++ compiler are needed to build the example")


@needs_toolchain
@pytest.mark.slow  # the first build compiles against libtorch: ~2 min on 2 shared cores
def test_cpp_example_prints_the_python_forecast(tmp_path):
    twin_path = export_twin(make_twin(), NORMALISER, feature_spec(), tmp_path / "twin.pt", solver={"name": "rk4"})
    configure = ["cmake", "-S", str(SOURCE), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    for cmd in (configure, ["cmake", "--build", str(BUILD), "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = subprocess.run([str(BUILD / "twin_forecast"), str(twin_path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = [ln.split() for ln in run.stdout.strip().splitlines()]

    # The same input in Python (see main.cpp): first measurement at its training mean at 0, 1, 2 h.
    twin, meta = load_twin(twin_path)
    mean0 = torch.tensor(NORMALISER["meas_mean"])
    mask = torch.zeros(3, 4)
    mask[:, 0] = 1.0
    query = torch.tensor([3.0, 6.0, 12.0])
    with torch.no_grad():
        mean, std = twin.forecast(torch.tensor([0.0, 1.0, 2.0]), mean0.repeat(3, 1), mask,
                                  torch.full((3,), float("nan")), torch.zeros(0, 4), query)
    names = [m["name"] for m in meta["measurements"]]
    assert len(lines) == 3 * 4
    for k, (t, name, m, s) in enumerate(lines):
        q, d = divmod(k, 4)
        assert float(t) == float(query[q]) and name == names[d]
        assert math.isclose(float(m), float(mean[q, d]), rel_tol=1e-5)
        assert math.isclose(float(s), float(std[q, d]), rel_tol=1e-5)

    bad = subprocess.run([str(BUILD / "twin_forecast"), str(tmp_path / "missing.pt")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "error: cannot load" in bad.stderr

    # The timing mode runs the 48-h forecast N times and prints p50/p99 (microseconds), calls, threads.
    timed = subprocess.run([str(BUILD / "twin_forecast"), str(twin_path), "--time", "5"], capture_output=True,
                           text=True, timeout=120, env={"OMP_NUM_THREADS": "1"})
    assert timed.returncode == 0, timed.stderr
    p50, p99, calls, threads = timed.stdout.split()
    assert 0 < float(p50) <= float(p99) and int(calls) == 5 and int(threads) == 1
    usage = subprocess.run([str(BUILD / "twin_forecast"), str(twin_path), "--time", "0"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr

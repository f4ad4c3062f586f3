"""scripts/gpu_check.sh: valid bash, a dry run prints the planned commands, and a run goes on
past a failing script, reports it and bundles results under $OUT (scripts stood in for by a
fake Python: the benches themselves need a GPU, and their CPU runs are tested elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
case "$1" in
  -c) exit 0 ;;
  scripts/bench_solvers.py) echo "solver exploded" >&2; exit 3 ;;
  scripts/bench_simulator.py)
    while [ $# -gt 0 ]; do [ "$1" = --json ] && json="$2"; shift; done
    echo '{"machine": {"cpu": "fake"}, "rows": [{"name": "sim row", "batch": 7, "seconds": 0.5,
           "per_second": 14.0, "error": null}]}' > "$json" ;;
  scripts/benchlib.py) exec "{real}" "$@" ;;
  *) exec "{real}" "$@" ;;
esac
"""


def run(args, env_extra=None, fake: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("OUT", "OUT_DIR", "PYTHON")}
    env.update(env_extra or {})
    if fake is not None:
        env["PYTHON"] = str(fake)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def fake_python(tmp_path: Path) -> Path:
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PYTHON.replace("{real}", sys.executable))
    fake.chmod(0o755)
    return fake


def test_gpu_check_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_dry_run_prints_every_planned_command(tmp_path):
    res = run(["--dry-run", "--out", str(tmp_path / "res")])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"scripts/bench_solvers.py --device cuda --quick --json {tmp_path}/res/solvers.json" in out
    assert "scripts/bench_simulator.py --device cuda --quick --json" in out and "--dtype float32" in out
    for name, flags in (("train_tf32", "--tf32"), ("train_bf16", "--dtype bfloat16"), ("infer_cuda_graphs", "--cuda-graphs")):
        script = "bench_train.py" if name.startswith("train") else "bench_infer.py"
        assert f"scripts/{script} --device cuda --quick --json {tmp_path}/res/{name}.json {flags}" in out, name
    for line in out.splitlines():
        if line.startswith("timeout"):
            assert line.startswith("timeout -k 5 ")  # every run is bounded
    assert not (tmp_path / "res").exists()  # a dry run writes nothing


def test_run_continues_past_a_failure_and_bundles_under_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    res = run(["--device", "cpu", "--only", "solvers,simulator"], {"OUT": str(out)}, fake_python(tmp_path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "solvers: failed: exit 3" in res.stdout and "solver exploded" in res.stdout
    assert "failed: solvers" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["all.json", "gpu_check.log", "summary.md"]
    summary = (out / "summary.md").read_text()
    assert "| solvers | failed: exit 3 |" in summary and "| simulator | ok |" in summary
    assert "| sim row | 7 | 0.5 | 14 | - |" in summary  # the table of the run that worked
    reports = json.loads((out / "all.json").read_text())
    assert list(reports) == ["simulator"] and reports["simulator"]["rows"][0]["batch"] == 7
    assert "solver exploded" in (out / "gpu_check.log").read_text()


def test_all_ok_run_exits_zero_with_json_per_run(tmp_path):
    res = run(["--device", "cpu", "--only", "simulator", "--out", str(tmp_path / "r")], fake=fake_python(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "r" / "simulator.json").is_file() and (tmp_path / "r" / "summary.md").is_file()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: the check runs for real there")
def test_no_gpu_is_a_clear_error(tmp_path):
    res = run(["--out", str(tmp_path / "r")])
    assert res.returncode == 2 and "nvidia-smi is missing or finds no GPU" in res.stderr
    assert not (tmp_path / "r").exists()

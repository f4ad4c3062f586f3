"""twinode-predict at its trust boundaries: plan files parsed within bounds, the mapping plan,
forecast sizes, outputs checked before work, and the whole-file sha256 of the twin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import polars as pl
import pytest

from tests.unit.export.test_integrity import _forge
from tests.unit.test_limits import BOMB
from twinode.apps.command_line import exit_code
from twinode.cli.predict import main as predict_main
from twinode.export.integrity import file_sha256, sidecar_path


def main(argv: list[str]) -> None:
    """twinode-predict in process: returns on exit code 0, raises SystemExit otherwise."""
    code = exit_code(predict_main, argv)
    if code:
        raise SystemExit(code)


HISTORY = "subject_id,time,code,numeric_value\n7,0,HR,90\n7,0,MAP,62\n7,3,HR,95\n7,3,MAP,68\n"


@pytest.fixture
def files(tmp_path, twin_file):
    shutil.copy(twin_file, tmp_path / "twin.pt")
    shutil.copy(sidecar_path(twin_file), sidecar_path(tmp_path / "twin.pt"))
    (tmp_path / "history.csv").write_text(HISTORY)
    return tmp_path


def _run(files, *extra, out="f.parquet"):
    return main(["--twin", str(files / "twin.pt"), "--history", str(files / "history.csv"), "--horizon", "6",
                 "--samples", "20", "--out", str(files / out), *extra])


def _fails(capsys, files, *extra, out="f.parquet") -> str:
    with pytest.raises(SystemExit) as exit_info:
        _run(files, *extra, out=out)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err[:2000]
    return err


def test_alias_bomb_plan_is_refused_in_bounded_time_and_memory(files):
    """The 600-byte bomb took 74 s, 4.3 GB and wrote a 2 GB error; here under a 2 GiB address-space limit."""
    (files / "bomb.yaml").write_text(BOMB)
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from twinode.cli.predict import main\n"
            f"main(['--twin', {str(files / 'twin.pt')!r}, '--history', {str(files / 'history.csv')!r}, "
            f"'--horizon', '6', '--out', {str(files / 'f.parquet')!r}, '--plan', {str(files / 'bomb.yaml')!r}])\n")
    # glibc reserves 64 MiB of address space per malloc arena, and how many arenas the threads
    # make depends on contention: cap them so the limit measures what twinode allocates.
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.startswith("error: plan refused") and "alias bomb" in out.stderr and len(out.stderr) < 1000
    assert time.perf_counter() - t0 < 60 and not (files / "f.parquet").exists()


def test_a_one_dose_mapping_plan_is_one_dose(files):
    (files / "one.yaml").write_text("name: VASO\ntime_h: 4\namount: 12\n")
    (files / "none.json").write_text("[]")
    _run(files, "--plan", str(files / "one.yaml"), "--plan", str(files / "none.json"))
    frame = pl.read_parquet(files / "f.parquet").filter((pl.col("name") == "MAP") & (pl.col("time_h") > 4.5))
    one, none = (frame.filter(pl.col("plan") == p)["mean"] for p in ("one", "none"))
    assert (one - none).abs().max() > 1e-3  # the dose is in the forecast (it used to be dropped silently)


def test_a_misspelt_plan_key_is_an_error(files, capsys):
    (files / "typo.yaml").write_text("plans:\n  - {name: VASO, time_h: 4, amount: 12}\n")
    assert "unknown key(s) ['plans']" in _fails(capsys, files, "--plan", str(files / "typo.yaml"))


def test_forecast_size_is_checked_before_allocating(files, capsys):
    t0 = time.perf_counter()
    err = _fails(capsys, files, "--step", "0.001", "--horizon", "10000")
    assert "forecast points" in err and "larger --step" in err and time.perf_counter() - t0 < 20
    assert "--samples" in _fails(capsys, files, "--samples", "100000000")


def test_outputs_are_checked_before_any_work(files, capsys):
    before = (files / "history.csv").read_text()
    assert "also the input --history" in _fails(capsys, files, out="history.csv")
    assert (files / "history.csv").read_text() == before
    assert "unknown output format '.gif'" in _fails(capsys, files, "--plot", str(files / "f.gif"))
    assert not (files / "f.parquet").exists()  # the forecast is not written before the plot fails


def test_whole_file_sha256(files, capsys):
    _run(files)
    assert "matches the sidecar twin.pt.sha256" in capsys.readouterr().out
    _run(files, "--sha256", file_sha256(files / "twin.pt"))
    assert "matches --sha256" in capsys.readouterr().out
    assert "does not match" in _fails(capsys, files, "--sha256", "0" * 64)
    sidecar_path(files / "twin.pt").unlink()
    _run(files)
    assert "only the embedded weights check was possible" in capsys.readouterr().out


def test_forged_twin_is_refused(files, capsys):
    _forge(files / "twin.pt", files / "forged.pt")
    shutil.copy(files / "forged.pt", files / "twin.pt")  # the sidecar stays as exported
    assert "from the sidecar twin.pt.sha256" in _fails(capsys, files)

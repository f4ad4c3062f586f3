"""Scenario files: parsing, clear errors for bad files, and the CLI that writes trajectories."""

import json
from pathlib import Path

import polars as pl
import pytest

from twinode.cli.data import main as data_main
from twinode.apps.command_line import exit_code
from twinode.data.simulators.glucose_scenarios import load_scenarios, scenario_inputs
from twinode.errors import DataError


def main(argv: list[str]) -> int:
    """twinode-data in process: its exit code."""
    return exit_code(data_main, argv)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "glucose"
GOOD = {"id": "a", "patient": "adult#001", "minutes": 60, "basal_u_per_h": 1.0, "meals": [[10, 30]], "boluses": [[10, 3.0]]}


def _write(tmp_path, doc, raw=False) -> Path:
    path = tmp_path / "scenarios.json"
    path.write_text(doc if raw else json.dumps(doc))
    return path


def test_inputs_follow_the_scenario():
    s = load_scenarios(FIXTURES / "scenarios_8h.json")
    meals, insulin = scenario_inputs(s)
    assert meals.shape == insulin.shape == (3, 480)
    assert meals[0, 393] == 16 and meals[0].sum() == 16
    assert abs(insulin[0, 413].item() - (0.8 + 0.8361 / 60)) < 1e-12
    assert abs(insulin[0, 0].item() - 0.8361 / 60) < 1e-12


@pytest.mark.parametrize("doc, match", [
    ("{not json", "not valid JSON"),
    ({"id": "a"}, "non-empty JSON list"),
    ([], "non-empty JSON list"),
    ([{k: v for k, v in GOOD.items() if k != "meals"}], r"misses key\(s\) \['meals'\]"),
    ([{**GOOD, "patient": "adult#099"}], "unknown patient 'adult#099'"),
    ([{**GOOD, "minutes": 0}], "'minutes' must be a positive integer"),
    ([{**GOOD, "meals": [[60, 30]]}], r"'meals\[0\]' minute must be an integer in \[0, 60\)"),
    ([{**GOOD, "boluses": [[5]]}], r"'boluses\[0\]' must be \[minute, amount\]"),
    ([{**GOOD, "boluses": [[5, -1.0]]}], "finite number >= 0"),
    ([{**GOOD, "basal_u_per_h": "1"}], "'basal_u_per_h' must be a finite number"),
    ([GOOD, GOOD], "duplicate scenario id 'a'"),
])
def test_bad_scenario_files_name_file_and_scenario(tmp_path, doc, match):
    path = _write(tmp_path, doc, raw=isinstance(doc, str))
    with pytest.raises(DataError, match=match) as info:
        load_scenarios(path)
    assert str(path) in str(info.value)


def test_nan_amount_is_rejected(tmp_path):
    path = _write(tmp_path, json.dumps([{**GOOD, "meals": [[1, float("nan")]]}]), raw=True)
    with pytest.raises(DataError, match=r"meals\[0\] amount.*nan.*row=0"):
        load_scenarios(path)


def test_cli_writes_reference_columns(tmp_path, capsys):
    out = tmp_path / "traj.parquet"
    assert main(["simulate", "glucose", "--scenarios", str(FIXTURES / "scenarios_8h.json"), "--out", str(out)]) == 0
    got = pl.read_parquet(out)
    ref = pl.read_parquet(FIXTURES / "trajectories_8h.parquet")
    assert got.columns == ref.columns == ["scenario", "patient", "minute", *[f"x{k}" for k in range(13)], "gsub_mg_dl"]
    assert got.height == ref.height == 3 * 481
    assert "3 scenario(s)" in capsys.readouterr().out


@pytest.mark.parametrize("args, match", [
    (["--scenarios", "missing.json", "--out", "t.parquet"], "no such scenario file"),
    (["--out", "t.parquet"], "both or neither"),
    (["--scenarios", "s.json", "--patients", "3", "--out", "t.parquet"], "both or neither"),
    (["--patients", "0", "--out", "dir"], "patients"),
    (["--patients", "2", "--device", "nonsense", "--out", "dir"], "not a torch device"),
    (["--scenarios", str(FIXTURES / "scenarios_8h.json"), "--out", "t.txt"], "a .parquet or .csv file"),
])
def test_cli_bad_arguments_exit_nonzero_with_one_error_line(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "glucose", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err
    assert not (tmp_path / "t.parquet").exists()

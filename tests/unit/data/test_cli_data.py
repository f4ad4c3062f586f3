"""twinode-data: exit codes and one-line located errors."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import yaml

from twinode.cli.data import main as data_main
from twinode.apps.command_line import exit_code
from twinode.data.spec_files import load_spec

from conftest import REPO, TINY_SPEC


def main(argv: list[str]) -> int:
    """twinode-data in process: its exit code."""
    return exit_code(data_main, argv)


def _spec_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump({"source": {"spec": TINY_SPEC}}))
    return p


def test_validate_ok_prints_report(tiny_meds, tmp_path, capsys):
    assert main(["validate", str(tiny_meds), "--spec", str(_spec_file(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["subjects"] == 12 and out["usable_subjects"] == 12 and out["dropped"]["after_window"] == 12


def test_validate_table_output(tiny_meds, capsys):
    assert main(["validate", str(tiny_meds)]) == 0
    assert "LAB//HR" in capsys.readouterr().out


def test_validate_bad_data_one_line_error(tmp_path, capsys):
    p = tmp_path / "x.parquet"
    pl.DataFrame({"subject_id": [1, 2], "time": [0.0, 1.0], "code": ["A", None], "numeric_value": [1.0, 2.0]}).write_parquet(p)
    rc = main(["validate", str(p)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and err.startswith("error: null code") and "row=1" in err and "\n" not in err


def test_unknown_spec_name_lists_available(tiny_meds, capsys):
    rc = main(["validate", str(tiny_meds), "--spec", "no_such_spec"])
    err = capsys.readouterr().err
    assert rc != 0 and "physionet2012" in err


def test_spec_names_resolve_to_shipped_configs():
    pn = load_spec("physionet2012")
    assert len(pn.measurements) == 37 and len(pn.statics) == 5 and len(pn.outcomes) == 1
    assert pn.window_start.code == "ICU_ADMISSION"
    mimic = load_spec("mimic_iv_demo")
    assert mimic.window_start.match == "prefix" and {f.kind for f in mimic.interventions} == {"infusion"}
    assert mimic.resolve("LAB//220179//mmHg").name == "SBP" and mimic.resolve("LAB//225664//UNK").name == "Glucose"


def test_import_command_end_to_end(tiny_challenge, tmp_path, capsys):
    archive, outcomes = tiny_challenge
    out = tmp_path / "pn"
    assert main(["import", "physionet2012", "--archive", str(archive), "--outcomes", str(outcomes), "--out", str(out)]) == 0
    assert "imported 10 records" in capsys.readouterr().out
    assert main(["validate", str(out), "--spec", "physionet2012"]) == 0


def test_import_command_bad_archive_exit_code(tmp_path):
    bad = tmp_path / "set-a.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08garbage")
    (tmp_path / "o.txt").write_text("RecordID,In-hospital_death\n1,0\n")
    proc = subprocess.run([sys.executable, "-m", "twinode.cli.data", "import", "physionet2012", "--archive", str(bad),
                           "--outcomes", str(tmp_path / "o.txt"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot read the archive") and "Traceback" not in proc.stderr

"""twinode-data validate --spec NAME works for every shipped data config, including the
embedded cohort whose FeatureSpec is built in code."""

from __future__ import annotations

import json

import pytest

from twinode.cli.data import main
from twinode.apps.command_line import exit_code
from twinode.config_dir import candidate_dirs
from twinode.data.spec_files import load_spec


def _names() -> list[str]:
    return sorted({p.stem for d in candidate_dirs() if (d / "data").is_dir() for p in (d / "data").glob("*.yaml")})


def test_every_shipped_data_config_names_a_spec():
    names = _names()
    assert "synthetic_icu" in names and "glucose" in names
    for name in names:
        assert load_spec(name).measurements, name


def test_validate_with_the_embedded_cohorts_spec(tmp_path, capsys):
    events = tmp_path / "icu.csv"
    events.write_text("subject_id,time,code,numeric_value\n1,0,HR,80\n1,1,MAP,70\n1,2,VASO,5\n2,0,HR,90\n")
    assert exit_code(main, ["validate", str(events), "--spec", "synthetic_icu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["spec"] == "synthetic_icu" and report["usable_subjects"] == 2


def test_an_unknown_spec_name_is_one_error_line(tmp_path, capsys):
    events = tmp_path / "icu.csv"
    events.write_text("subject_id,time,code,numeric_value\n1,0,HR,80\n")
    with pytest.raises(SystemExit) as e:
        main(["validate", str(events), "--spec", "no_such_dataset"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "synthetic_icu" in err

"""twinode-data import never loses the user's data: another dataset in --out is refused, a failed
import leaves the previous one whole, an input is never the output."""

from __future__ import annotations

import errno

import polars as pl
import pytest

from twinode.cli.data import main as data_main
from twinode.apps.command_line import exit_code
from twinode.data.importers import physionet2012
from twinode.data.importers.output import written_by_twinode
from twinode.errors import DataError


def main(argv: list[str]) -> int:
    """twinode-data in process: its exit code."""
    return exit_code(data_main, argv)


def _import(archive, outcomes, out, *extra):
    return main(["import", "physionet2012", "--archive", str(archive), "--outcomes", str(outcomes), "--out", str(out), *extra])


def _other_dataset(root):
    (root / "data" / "cohort_b" / "shard").mkdir(parents=True)
    pl.DataFrame({"subject_id": [1], "code": ["X"]}).write_parquet(root / "data" / "cohort_b" / "shard" / "0.parquet")
    (root / "metadata").mkdir()
    (root / "metadata" / "dataset.json").write_text('{"dataset_name": "cohort B", "etl_name": "their_etl"}')
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_import_over_another_dataset_is_refused(tiny_challenge, tmp_path, capsys):
    archive, outcomes = tiny_challenge
    out = tmp_path / "meds"
    before = _other_dataset(out)
    assert _import(archive, outcomes, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "did not write" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing deleted or rewritten

    assert _import(archive, outcomes, out, "--overwrite") == 0  # the explicit choice replaces the folder
    assert written_by_twinode(out) and not (out / "data" / "cohort_b").exists()


def test_reimport_replaces_an_earlier_import(tiny_challenge, tmp_path):
    archive, outcomes = tiny_challenge
    out = tmp_path / "meds"
    assert _import(archive, outcomes, out) == 0
    assert _import(archive, outcomes, out) == 0
    assert written_by_twinode(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".meds")] == []  # no staging left behind


def test_a_failed_import_leaves_the_previous_one_whole(tiny_challenge, tmp_path, monkeypatch):
    archive, outcomes = tiny_challenge
    out = tmp_path / "meds"
    assert _import(archive, outcomes, out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = physionet2012.write_meds

    def disk_full(events, folder, report):
        real(events, folder, report)  # half written ...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(physionet2012, "write_meds", disk_full)
    with pytest.raises(OSError):
        physionet2012.import_physionet2012(archive, outcomes, out)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".meds")] == []


@pytest.mark.parametrize("where", ["archive", "parent_of_inputs", "file_name"])
def test_outputs_never_replace_inputs_and_are_checked_before_work(tiny_challenge, tmp_path, capsys, where):
    archive, outcomes = tiny_challenge
    out = {"archive": archive, "parent_of_inputs": archive.parent, "file_name": tmp_path / "meds.parquet"}[where]
    size = archive.stat().st_size
    assert _import(archive, outcomes, out, "--overwrite") == 2
    assert capsys.readouterr().err.startswith("error: --out")
    assert archive.stat().st_size == size and outcomes.is_file() and not (tmp_path / "meds.parquet").exists()


def test_check_output_is_a_data_error(tmp_path):
    from twinode.data.importers.output import check_output

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="did not write"):
        check_output(tmp_path, [])


def test_simulated_cohort_never_lands_in_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "meds"
    before = _other_dataset(out)
    assert main(["simulate", "glucose", "--patients", "2", "--days", "1", "--out", str(out)]) == 2
    assert "did not write" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("out, match", [("scen.json", "is also the input --scenarios"), ("t.txt", "a .parquet or .csv")])
def test_scenario_output_is_checked_before_simulating(tmp_path, capsys, out, match):
    scenarios = tmp_path / "scen.json"
    scenarios.write_text("[]")
    assert main(["simulate", "glucose", "--scenarios", str(scenarios), "--out", str(tmp_path / out)]) == 2
    assert match in capsys.readouterr().err and scenarios.read_text() == "[]"

"""Output paths are checked before any work: format, never an input, never twice."""

from __future__ import annotations

import pytest

from twinode.apps.outputs import PLOT_SUFFIXES, TABLE_SUFFIXES, check_outputs
from twinode.errors import DataError


def _check(tmp_path, out, plot=None, history="h.csv", plans=("p.yaml",)):
    check_outputs({"--out": (out, TABLE_SUFFIXES), "--plot": (plot, PLOT_SUFFIXES)},
                  {"--history": tmp_path / history, "--plan": [tmp_path / p for p in plans], "--model": "models:/x@y"})


def test_valid_outputs_pass(tmp_path):
    _check(tmp_path, tmp_path / "f.parquet", tmp_path / "f.png")
    _check(tmp_path, tmp_path / "f.CSV")


@pytest.mark.parametrize("out, plot, match", [
    ("h.csv", None, "also the input --history"),
    ("sub/../p.yaml.csv", None, None),
    ("f.parquet", "f.gif", "unknown output format '.gif'"),
    ("f.txt", None, "unknown output format '.txt'"),
    ("f.parquet", "f.parquet", "unknown output format"),
])
def test_bad_outputs_are_refused(tmp_path, out, plot, match):
    (tmp_path / "sub").mkdir()
    args = (tmp_path / out, tmp_path / plot if plot else None)
    if match is None:
        _check(tmp_path, *args)  # a different file that merely shares a prefix
        return
    with pytest.raises(DataError, match=match):
        _check(tmp_path, *args)


def test_history_written_as_csv_output_is_refused_even_through_another_spelling(tmp_path):
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="destroy that input"):
        _check(tmp_path, tmp_path / "sub" / ".." / "h.csv")


def test_same_file_twice_is_refused(tmp_path):
    with pytest.raises(DataError, match="same file"):
        check_outputs({"--out": (tmp_path / "a.csv", TABLE_SUFFIXES), "--report": (tmp_path / "a.csv", (".csv",))}, {})

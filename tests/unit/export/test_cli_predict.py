"""twinode-predict: history + plans -> long forecast, table, plot; bad inputs exit non-zero."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
import torch

from twinode.cli.predict import main
from twinode.export.inputs import read_history
from twinode.export.torchscript import load_verified_twin

HISTORY = """subject_id,time,code,numeric_value
7,0,AGE,65
7,0,HR,90
7,0,MAP,62
7,1.5,LACTATE,2.5
7,2,VASO,5
7,3,HR,95
7,3,MAP,68
7,4,TEMP,37.8
7,48,DEATH,0
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "history.csv").write_text(HISTORY)
    (tmp_path / "vaso.yaml").write_text("- {name: VASO, time_h: 6, amount: 12}\n- {name: VASO, time_h: 9, amount: 6, duration_h: 2}\n")
    (tmp_path / "nothing.json").write_text("[]")
    return tmp_path


def test_two_plans_side_by_side(twin_file, files, capsys):
    out, plot = files / "forecast.parquet", files / "forecast.png"
    main(["--model", str(twin_file), "--history", str(files / "history.csv"), "--plan", str(files / "vaso.yaml"),
          "--plan", str(files / "nothing.json"), "--horizon", "12", "--out", str(out), "--plot", str(plot), "--samples", "50"])
    text = capsys.readouterr().out
    assert "vaso" in text and "nothing" in text and "MAP (mmHg)" in text and "risk of DEATH" in text
    frame = pl.read_parquet(out)
    assert frame.columns == ["plan", "time_h", "name", "unit", "mean", "q05", "q95"]
    assert frame.height == 2 * 13 * 4  # plans x (horizon/step + 1) x measurements
    assert bool(((frame["q05"] <= frame["q95"])).all())
    assert plot.stat().st_size > 10_000

    by = {p: frame.filter((pl.col("plan") == p) & (pl.col("name") == "MAP")).sort("time_h") for p in ("vaso", "nothing")}
    before = by["vaso"]["time_h"] < 6.0
    after = by["vaso"]["time_h"] > 6.0
    assert (by["vaso"]["mean"].filter(before) - by["nothing"]["mean"].filter(before)).abs().max() < 1e-5
    assert (by["vaso"]["mean"].filter(after) - by["nothing"]["mean"].filter(after)).abs().max() > 1e-3

    # the CLI's numbers are the twin's own forecast for the same tensors
    twin, meta = load_verified_twin(twin_file)
    h = read_history(files / "history.csv", meta)
    q = torch.tensor(by["nothing"]["time_h"].to_list(), dtype=torch.float32)
    with torch.no_grad():
        mean, _ = twin.forecast(h.times, h.values, h.mask, h.static, h.doses, q)
    assert torch.allclose(torch.tensor(by["nothing"]["mean"].to_list()), mean[:, 1], rtol=1e-6)
    assert h.skipped == {"DEATH": 1} and h.doses.tolist() == [[2.0, 0.0, 5.0, 0.0]]


def _fails(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_tampered_model_is_refused(twin_file, files, capsys):
    bad = files / "twin.pt"
    shutil.copy(twin_file, bad)
    data = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(data[: len(data) - 200]))
    err = _fails(["--model", str(bad), "--history", str(files / "history.csv"), "--horizon", "6", "--out", str(files / "o.parquet")], capsys)
    assert "error:" in err and "not a loadable TorchScript twin" in err
    assert not (files / "o.parquet").exists()


@pytest.mark.parametrize("case,content,expected", [
    ("unknown_code", HISTORY + "7,5,GLUCOSE,120\n", "unknown code 'GLUCOSE'"),
    ("two_subjects", HISTORY + "8,5,HR,70\n", "history must hold one subject"),
    ("bad_number", HISTORY + "7,5,HR,fast\n", "column 'numeric_value' expects numbers"),
])
def test_bad_history(twin_file, files, capsys, case, content, expected):
    (files / "history.csv").write_text(content)
    err = _fails(["--model", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "6",
                  "--out", str(files / "o.parquet")], capsys)
    assert expected in err


@pytest.mark.parametrize("plan,expected", [
    ("- {name: NOREPI, time_h: 6, amount: 1}\n", "unknown intervention 'NOREPI'"),
    ("- {name: VASO, time_h: 1, amount: 1}\n", "before the end of the history"),
    ("- {name: VASO, time_h: 6}\n", "dose 0 must be a mapping with name, time_h, amount"),
    ("- {name: VASO, time_h: 6, amount: .nan}\n", "values must be finite"),
    ("{not yaml: [\n", "plan is not valid YAML"),
])
def test_bad_plan(twin_file, files, capsys, plan, expected):
    (files / "plan.yaml").write_text(plan)
    err = _fails(["--model", str(twin_file), "--history", str(files / "history.csv"), "--plan", str(files / "plan.yaml"),
                  "--horizon", "6", "--out", str(files / "o.parquet")], capsys)
    assert expected in err


def test_absurd_horizon_is_refused(twin_file, files, capsys):
    err = _fails(["--model", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "36000",
                  "--out", str(files / "o.parquet")], capsys)
    assert "--horizon must be in (0, 10000]" in err

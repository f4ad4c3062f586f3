"""twinode-predict: history + plans -> long forecast, table, plot; bad inputs exit non-zero."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
import torch

from twinode.apps.command_line import exit_code
from twinode.cli.predict import main as predict_main
from twinode.export.inputs import read_history
from twinode.export.torchscript import load_verified_twin


def main(argv: list[str]) -> None:
    """twinode-predict in process: returns on exit code 0, raises SystemExit otherwise."""
    code = exit_code(predict_main, argv)
    if code:
        raise SystemExit(code)


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
    main(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--plan", str(files / "vaso.yaml"),
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
    err = _fails(["--twin", str(bad), "--history", str(files / "history.csv"), "--horizon", "6", "--out", str(files / "o.parquet")], capsys)
    assert "error:" in err and "not a loadable TorchScript twin" in err
    assert not (files / "o.parquet").exists()


@pytest.mark.parametrize("case,content,expected", [
    ("unknown_code", HISTORY + "7,5,GLUCOSE,120\n", "unknown code 'GLUCOSE'"),
    ("two_subjects", HISTORY + "8,5,HR,70\n", "history must hold one subject"),
    ("bad_number", HISTORY + "7,5,HR,fast\n", "column 'numeric_value' expects numbers"),
])
def test_bad_history(twin_file, files, capsys, case, content, expected):
    (files / "history.csv").write_text(content)
    err = _fails(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "6",
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
    err = _fails(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--plan", str(files / "plan.yaml"),
                  "--horizon", "6", "--out", str(files / "o.parquet")], capsys)
    assert expected in err


def test_absurd_horizon_is_refused(twin_file, files, capsys):
    err = _fails(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "36000",
                  "--out", str(files / "o.parquet")], capsys)
    assert "--horizon must be in (0, 10000]" in err


@pytest.mark.parametrize("extra,expected", [
    ("7,5,VASO,-2\n", "dose amount must be >= 0"),
    ("".join(f"7,{m},HR,90\n" for m in range(60, 60 * 60, 60)), "look like minutes or seconds"),
])
def test_bad_history_values_exit_2_and_write_nothing(twin_file, files, capsys, extra, expected):
    (files / "history.csv").write_text(HISTORY + extra)
    out = files / "o.parquet"
    with pytest.raises(SystemExit) as e:
        main(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "6", "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err
    assert not out.exists()


def test_out_of_range_history_values_are_dropped_and_reported(twin_file, files, capsys):
    (files / "history.csv").write_text(HISTORY + "7,3.5,HR,1e30\n")
    out = files / "o.parquet"
    main(["--twin", str(twin_file), "--history", str(files / "history.csv"), "--horizon", "6", "--out", str(out), "--samples", "4"])
    assert "out_of_range:HR" in capsys.readouterr().err
    assert pl.read_parquet(out)["mean"].abs().max() < 1e6


MEDS_HISTORY = """subject_id,time,code,numeric_value
7,2100-01-01T08:00:00,AGE,65
7,2100-01-01T08:00:00,HR,90
7,2100-01-01T08:00:00,MAP,62
7,2100-01-01T09:30:00,LACTATE,2.5
7,2100-01-01T10:00:00,VASO,5
7,2100-01-01T11:00:00,HR,95
7,2100-01-01T11:00:00,NOTE//FREE_TEXT,
9,2100-01-01T08:00:00,HR,70
"""


def test_timestamped_events_need_a_subject_and_then_match_the_hour_history(twin_file, files, capsys):
    (files / "meds.csv").write_text(MEDS_HISTORY)
    out = files / "o.parquet"
    err = _fails(["--twin", str(twin_file), "--history", str(files / "meds.csv"), "--horizon", "6", "--out", str(out)], capsys)
    assert "history must hold one subject" in err and "twinode-predict --subject" in err and not out.exists()
    main(["--twin", str(twin_file), "--history", str(files / "meds.csv"), "--subject", "7", "--time-origin", "2100-01-01T08:00",
          "--horizon", "6", "--out", str(out), "--samples", "4"])
    assert "NOTE//FREE_TEXT" in capsys.readouterr().err  # unknown codes in timestamped data: skipped and counted
    twin, meta = load_verified_twin(twin_file)
    h = read_history(files / "meds.csv", meta, subject=7)
    assert h.times.tolist() == [0.0, 1.5, 3.0] and h.doses.tolist() == [[2.0, 0.0, 5.0, 0.0]]
    (files / "hours.csv").write_text("subject_id,time,code,numeric_value\n7,0,AGE,65\n7,0,HR,90\n7,0,MAP,62\n7,1.5,LACTATE,2.5\n"
                                     "7,2,VASO,5\n7,3,HR,95\n")
    hours = read_history(files / "hours.csv", meta)
    for k in ("times", "values", "mask", "static", "doses"):
        assert torch.equal(getattr(h, k).nan_to_num(-1.0), getattr(hours, k).nan_to_num(-1.0)), k

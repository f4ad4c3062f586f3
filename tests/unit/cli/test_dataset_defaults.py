"""Dataset-aware defaults: twinode-plan's target and safety bounds from the twin's metadata (or
the flags it says it needs), --sha256 on plan and monitor, monitor's channel grid, and the
doses marked on predict's plot."""

from __future__ import annotations

import json

import matplotlib
import polars as pl
import pytest

from tests.unit.apps.conftest import export_glucose_twin, history_rows, write_jsonl
from tests.unit.export.conftest import NORMALISER, make_twin
from twinode.apps.plan_defaults import resolve_dose_bounds, resolve_target
from twinode.cli import monitor as monitor_cli
from twinode.cli import plan as plan_cli
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.errors import DataError
from twinode.export.torchscript import export_twin, load_verified_twin

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def icu_twin(tmp_path_factory):
    """A synthetic-ICU twin (HR, MAP, LACTATE, TEMP; VASO): its metadata has no target range."""
    path = tmp_path_factory.mktemp("icu") / "twin.pt"
    return export_twin(make_twin(), NORMALISER, feature_spec(), path, solver={"name": "rk4", "step": 0.5})


@pytest.fixture(scope="module")
def glucose_twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("glucose")
    plain = export_glucose_twin(root / "plain.pt")
    ranged = export_glucose_twin(root / "ranged.pt", CGM={"target_range": (70.0, 180.0)},
                                 InsulinBolus={"max_dose": 4.0, "min_spacing_h": 1.0})
    return plain, ranged


ICU_HISTORY = "subject_id,time,code,numeric_value\n1,0,AGE,65\n1,0,HR,90\n1,0,MAP,62\n1,2,VASO,5\n1,3,HR,95\n1,3,MAP,68\n"


def _glucose_history(tmp_path):
    lines = ["subject_id,time,code,numeric_value,duration_h", "1,0,STATIC//BODY_WEIGHT//kg,70,", "1,0,INSULIN//BASAL//U/h,1.0,24"]
    lines += [f"1,{k / 12:.4f},CGM//mg/dL,{140 + k % 5}," for k in range(30)]
    p = tmp_path / "h.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def _candidates(tmp_path, dose="InsulinBolus", at=3.0):
    p = tmp_path / "c.yaml"
    p.write_text(f"- {{label: none, doses: []}}\n- label: dose\n  doses: [{{name: {dose}, time_h: {at}, amount: 4}}]\n")
    return p


def _plan(argv, capsys):
    with pytest.raises(SystemExit) as e:
        plan_cli.main(argv)
    return e.value.code, capsys.readouterr()


def test_plan_on_a_twin_without_a_target_range_names_the_flags_it_needs(icu_twin, tmp_path, capsys):
    (tmp_path / "h.csv").write_text(ICU_HISTORY)
    out = tmp_path / "r.json"
    code, cap = _plan(["--twin", str(icu_twin), "--history", str(tmp_path / "h.csv"),
                       "--candidates", str(_candidates(tmp_path, "VASO", 4.0)), "--out", str(out)], capsys)
    assert code == 2 and cap.err.count("\n") == 1 and not out.exists()
    assert "twinode-plan needs --target NAME --low L --high H" in cap.err
    assert "HR (bpm, valid 20-250)" in cap.err and "MAP (mmHg, valid 15-200)" in cap.err
    # with the flags it ranks, scored on the range given, not on a glucose range
    code, cap = _plan(["--twin", str(icu_twin), "--history", str(tmp_path / "h.csv"), "--candidates",
                       str(_candidates(tmp_path, "VASO", 4.0)), "--target", "MAP", "--low", "65", "--high", "90",
                       "--samples", "8", "--horizon", "4", "--out", str(out)], capsys)
    assert code == 0, cap.err
    res = json.loads(out.read_text())
    assert res["target"] == "MAP" and (res["objective"]["low"], res["objective"]["high"]) == (65.0, 90.0)
    assert res["objective"]["channel"] == 1
    assert "target MAP in [65, 90] mmHg (from the flags)" in cap.err


def test_plan_reads_the_target_range_from_the_metadata_and_flags_override_it(glucose_twins, tmp_path, capsys):
    plain, ranged = glucose_twins
    out = tmp_path / "r.json"
    args = ["--history", str(_glucose_history(tmp_path)), "--candidates", str(_candidates(tmp_path)), "--horizon", "2",
            "--samples", "8", "--out", str(out)]
    code, cap = _plan(["--twin", str(ranged), *args], capsys)
    assert code == 0, cap.err
    assert json.loads(out.read_text())["objective"]["low"] == 70.0
    assert "target CGM in [70, 180] mg/dL (from the twin's metadata)" in cap.err
    code, cap = _plan(["--twin", str(ranged), *args, "--low", "90"], capsys)
    assert code == 0 and (json.loads(out.read_text())["objective"]["low"], json.loads(out.read_text())["objective"]["high"]) == (90.0, 180.0)
    assert "(from the flags and the twin's metadata)" in cap.err
    # the same twin without a range in its metadata: one channel, so the target is known, the range is not
    out.unlink()
    code, cap = _plan(["--twin", str(plain), *args], capsys)
    assert code == 2 and "twinode-plan needs --low L --high H" in cap.err and "for CGM" in cap.err and not out.exists()


def test_a_target_range_outside_the_channels_valid_range_is_refused(glucose_twins, tmp_path, capsys):
    code, cap = _plan(["--twin", str(glucose_twins[1]), "--history", str(_glucose_history(tmp_path)), "--candidates",
                       str(_candidates(tmp_path)), "--low", "4", "--high", "10"], capsys)
    assert code == 2 and "lies outside CGM's valid range [39, 400] mg/dL" in cap.err


def test_safety_bounds_come_from_the_metadata_or_are_named(glucose_twins):
    plain, ranged = (load_verified_twin(p)[1] for p in glucose_twins)
    b = resolve_dose_bounds(ranged, None, None, None)
    assert (b.name, b.channel, b.max_dose, b.min_spacing_h) == ("InsulinBolus", 1, 4.0, 1.0)
    assert resolve_dose_bounds(ranged, "InsulinBolus", 2.0, None).max_dose == 2.0
    with pytest.raises(DataError, match=r"--optimise needs --dose NAME \(one of Carbs, InsulinBolus, InsulinBasal\), "
                                        r"--max-dose X, --min-spacing H"):
        resolve_dose_bounds(plain, None, None, None)
    with pytest.raises(DataError, match="--optimise needs --min-spacing H"):
        resolve_dose_bounds(plain, "Carbs", 50.0, None)
    with pytest.raises(DataError, match="'Insulin' is not an intervention"):
        resolve_dose_bounds(plain, "Insulin", 1.0, 1.0)
    t = resolve_target(ranged, None, None, None)
    assert (t.name, t.low, t.high, t.source) == ("CGM", 70.0, 180.0, "twin's metadata")


def _icu_meta(**planning: dict) -> dict:
    """A synthetic-ICU twin's metadata with planning fields set on the named features."""
    spec = feature_spec().to_dict()
    for f in spec["features"]:
        f.update(planning.get(f["name"], {}))
    return {"events": {"spec": spec}}


def test_one_feature_with_recorded_defaults_is_chosen_and_several_ask_for_the_flag():
    one = _icu_meta(MAP={"target_range": (65.0, 90.0)})
    t = resolve_target(one, None, None, None)
    assert (t.name, t.channel, t.low, t.high) == ("MAP", 1, 65.0, 90.0)
    two = _icu_meta(MAP={"target_range": (65.0, 90.0)}, HR={"target_range": (60.0, 100.0)})
    with pytest.raises(DataError, match=r"twinode-plan needs --target NAME: .* several measurements \(HR, MAP\)"):
        resolve_target(two, None, None, None)
    assert resolve_target(two, "HR", None, 90.0).high == 90.0
    with pytest.raises(DataError, match="'SpO2' is not a measurement of this twin"):
        resolve_target(two, "SpO2", None, None)
    only = _icu_meta(VASO={"max_dose": 0.5, "min_spacing_h": 1.0})  # the only intervention: chosen without --dose
    assert (resolve_dose_bounds(only, None, None, None).name, resolve_dose_bounds(only, None, 0.2, None).max_dose) == ("VASO", 0.2)


def test_plan_optimise_without_bounds_exits_2_naming_them(glucose_twins, tmp_path, capsys):
    code, cap = _plan(["--twin", str(glucose_twins[0]), "--history", str(_glucose_history(tmp_path)), "--optimise",
                       "--low", "70", "--high", "180"], capsys)
    assert code == 2 and "--optimise needs --dose NAME" in cap.err and "--max-dose X" in cap.err


def test_plan_and_monitor_check_sha256(glucose_twins, tmp_path, capsys):
    wrong = "0" * 64
    code, cap = _plan(["--twin", str(glucose_twins[1]), "--history", str(_glucose_history(tmp_path)), "--candidates",
                       str(_candidates(tmp_path)), "--sha256", wrong], capsys)
    assert code == 2 and "sha256" in cap.err and cap.err.startswith("error: ")
    stream = write_jsonl(tmp_path / "s.jsonl", history_rows(8))
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twins[1]), "--stream", stream, "--sha256", wrong])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "sha256" in err and err.startswith("error: ")
    from twinode.export.integrity import file_sha256

    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twins[1]), "--stream", stream, "--sha256", file_sha256(glucose_twins[1]),
                          "--samples", "0", "--out", str(tmp_path / "o.jsonl")])
    assert e.value.code == 0 and "matches --sha256" in capsys.readouterr().err


def _icu_stream(tmp_path, n=8):
    rows = [{"time": 0.0, "code": "AGE", "value": 60.0}]
    for k in range(n):
        rows += [{"time": float(k), "code": "HR", "value": 80.0 + k}, {"time": float(k), "code": "MAP", "value": 70.0 - k}]
    rows.append({"time": 2.0, "code": "TEMP", "value": 37.0})
    return write_jsonl(tmp_path / "icu.jsonl", sorted(rows, key=lambda r: r["time"]))


def test_monitor_plots_every_scored_channel_or_the_ones_named(icu_twin, tmp_path, capsys, monkeypatch):
    from twinode.apps import plots

    drawn = []
    real = plots.monitor_figure

    def spy(scored, names, units=None, threshold=None):
        fig = real(scored, names, units, threshold)
        drawn.append((list(names), [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]))
        return fig

    monkeypatch.setattr(plots, "monitor_figure", spy)
    stream = _icu_stream(tmp_path)
    png = tmp_path / "m.png"
    for extra, expected in (([], ["HR", "MAP"]), (["--channel", "MAP"], ["MAP"]),
                            (["--channel", "MAP,HR", "--channel", "TEMP"], ["MAP", "HR", "TEMP"])):
        with pytest.raises(SystemExit) as e:
            monitor_cli.main(["--twin", str(icu_twin), "--stream", stream, "--samples", "0", "--out", str(tmp_path / "o.jsonl"),
                              "--plot", str(png), *extra])
        assert e.value.code == 0, capsys.readouterr().err
        assert drawn[-1] == (expected, expected) and png.stat().st_size > 1000
    # TEMP has one reading (under the warm-up): its panel says so instead of vanishing
    fig = real([], ["TEMP"], {"TEMP": "degC"}, 3.0)
    assert "no scored readings" in [t.get_text() for t in fig.axes[0].texts]


def test_monitor_channel_errors(icu_twin, tmp_path, capsys):
    stream = _icu_stream(tmp_path)
    out = tmp_path / "o.jsonl"
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(icu_twin), "--stream", stream, "--plot", str(tmp_path / "m.png"), "--channel", "SPO2",
                          "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--channel SPO2: not a measurement of this twin" in err and not out.exists()
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(icu_twin), "--stream", stream, "--channel", "HR"])
    assert e.value.code == 2 and "give --plot FILE.png too" in capsys.readouterr().err


def test_predict_plot_marks_past_and_planned_doses_by_name(icu_twin, tmp_path):
    from twinode.apps.plots import forecast_figure
    from twinode.export.inputs import read_history, read_plan

    _, meta = load_verified_twin(icu_twin)
    (tmp_path / "h.csv").write_text(ICU_HISTORY)
    (tmp_path / "vaso.yaml").write_text("- {name: VASO, time_h: 6, amount: 12}\n")
    h = read_history(tmp_path / "h.csv", meta)
    plan = read_plan(tmp_path / "vaso.yaml", meta, h.anchor)
    rows = [{"plan": p, "time_h": t, "name": m["name"], "unit": "", "mean": 1.0, "q05": 0.0, "q95": 2.0}
            for p in ("vaso", "nothing") for t in (3.0, 9.0) for m in meta["measurements"]]
    fig = forecast_figure(pl.DataFrame(rows), h, meta, [plan])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["VASO 5", "VASO 12 (vaso)"]
    for ax in fig.axes:  # a marker on every panel at each dose time
        xs = sorted(float(line.get_xdata()[0]) for line in ax.lines if len(set(line.get_xdata())) == 1)
        assert xs == [2.0, 6.0]


def test_predict_cli_writes_the_plot_with_markers(icu_twin, tmp_path, capsys):
    from twinode.cli import predict

    (tmp_path / "h.csv").write_text(ICU_HISTORY)
    (tmp_path / "vaso.yaml").write_text("- {name: VASO, time_h: 6, amount: 12}\n")
    png = tmp_path / "f.png"
    with pytest.raises(SystemExit) as e:
        predict.main(["--twin", str(icu_twin), "--history", str(tmp_path / "h.csv"), "--plan", str(tmp_path / "vaso.yaml"),
                      "--horizon", "6", "--samples", "4", "--out", str(tmp_path / "f.parquet"), "--plot", str(png)])
    assert e.value.code == 0, capsys.readouterr().err
    assert png.stat().st_size > 10_000


def test_info_shows_what_plan_reads_from_the_metadata(glucose_twins, capsys):
    from twinode.cli import info

    with pytest.raises(SystemExit) as e:
        info.main(["--twin", str(glucose_twins[1])])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "target [70.0, 180.0] (twinode-plan)" in out and "at most 4 per dose, at least 1 h apart" in out
    with pytest.raises(SystemExit):
        info.main(["--twin", str(glucose_twins[0]), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert d["measurements"][0]["target_range"] is None and d["interventions"][1]["max_dose"] is None


def test_the_shipped_glucose_spec_gives_twinode_plan_its_defaults():
    from twinode.data.spec_files import load_spec

    spec = {f.name: f for f in load_spec("glucose").features}
    assert tuple(spec["CGM"].target_range) == (70.0, 180.0)
    assert (spec["InsulinBolus"].max_dose, spec["InsulinBolus"].min_spacing_h) == (10.0, 2.0)

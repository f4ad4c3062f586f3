import json

import pytest
import torch

from twinode.apps.planning import Objective, SafetyBounds, optimise_plan, rank_plans, score_plan
from twinode.cli import monitor as monitor_cli
from twinode.cli import plan as plan_cli


def _hist():
    t = torch.arange(0, 3, 1 / 12)
    v = (140 + 10 * torch.sin(t)).unsqueeze(1)
    return (t, v, torch.ones_like(v), torch.tensor([70.0, 2.0, 40.0])), torch.tensor([[0.0, 2.0, 1.0, 24.0]])


def test_rank_plans_orders_by_the_same_scores_as_scoring_alone(glucose_twin):
    twin, _ = glucose_twin
    hist, past = _hist()
    a = float(hist[0][-1])
    cands = [(f"b{k}", torch.tensor([[a, 0, 60.0, 0.0], [a, 1, float(k), 0.0]])) for k in (0, 4, 8)]
    obj = Objective(horizon_h=2.0)
    ranked = rank_plans(twin, hist, past, cands, obj, num_samples=16, seed=3)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    alone = {lab: score_plan(twin, hist, past, lab, p, obj, 16, 3).score for lab, p in cands}
    assert {s.label: s.score for s in ranked} == pytest.approx(alone)
    for s in ranked:
        assert 0 <= s.time_in_range <= 1 and 0 <= s.time_below <= 1
        assert s.score == pytest.approx(s.time_in_range - 3.0 * s.time_below, abs=1e-6)


def test_objective_counts_time_in_range_and_below():
    x = torch.tensor([[60.0, 100.0, 150.0, 200.0]])
    assert Objective(hypo_penalty=2.0).per_trajectory(x).item() == pytest.approx(0.5 - 2 * 0.25)


def test_safety_bounds_project_and_slots():
    b = SafetyBounds(channel=1, max_dose=5.0, min_spacing_h=2.0, max_total=6.0, increment=0.5)
    p = b.project(torch.tensor([9.0, 4.9, -1.0]))
    assert float(p.max()) <= 5.0 and float(p.min()) >= 0 and float(p.sum()) <= 6.0 + 1e-6
    assert torch.allclose(p / 0.5, torch.round(p / 0.5))
    s = b.slots(10.0, 6.0)
    assert s.tolist() == [10.0, 12.0, 14.0]


def test_optimised_plan_respects_the_safety_bounds(glucose_twin):
    twin, _ = glucose_twin
    hist, past = _hist()
    a = float(hist[0][-1])
    bounds = SafetyBounds(channel=1, max_dose=3.0, min_spacing_h=1.0, max_total=4.0, increment=0.1)
    meal = torch.tensor([[a, 0, 80.0, 0.0]])
    best, how = optimise_plan(twin, hist, past, meal, Objective(horizon_h=3.0), bounds, num_samples=4, steps=3)
    assert how in ("gradient", "search")
    ins = best.doses[best.doses[:, 1] == 1]
    assert torch.equal(best.doses[0], meal[0])  # the announced meal stays
    assert (ins.shape[0] == 0 or float(ins[:, 2].max()) <= 3.0) and float(ins[:, 2].sum()) <= 4.0 + 1e-5
    gaps = torch.diff(ins[:, 0])
    assert bool((gaps >= 1.0 - 1e-5).all())
    assert bool((ins[:, 0] >= a - 1e-6).all())


def _history_csv(tmp_path):
    lines = ["subject_id,time,code,numeric_value,duration_h", "1,0,STATIC//BODY_WEIGHT//kg,70,", "1,0,INSULIN//BASAL//U/h,1.0,24"]
    lines += [f"1,{k / 12:.4f},CGM//mg/dL,{140 + k % 5},"
              for k in range(30)]
    p = tmp_path / "h.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_plan_cli_ranks_candidates_and_writes_json_and_png(glucose_twin_file, tmp_path, capsys):
    cands = tmp_path / "c.yaml"
    cands.write_text("- {label: none, doses: []}\n- label: bolus\n  doses: [{name: InsulinBolus, time_h: 3.0, amount: 4}]\n")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    with pytest.raises(SystemExit) as e:
        plan_cli.main(["--twin", str(glucose_twin_file), "--history", str(_history_csv(tmp_path)), "--candidates", str(cands),
                       "--horizon", "2", "--samples", "8", "--out", str(out), "--plot", str(png)])
    assert e.value.code == 0
    res = json.loads(out.read_text())
    assert {p["label"] for p in res["plans"]} == {"none", "bolus"} and res["plans"][0]["rank"] == 1
    assert res["plans"][0]["score"] >= res["plans"][1]["score"]
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("text, message", [
    ("- {label: a, doses: [{name: Nope, time_h: 3, amount: 1}]}", "unknown intervention 'Nope'"),
    ("- {label: a, doses: [{name: InsulinBolus, time_h: 0.5, amount: 1}]}", "before the end of the history"),
    ("- {label: a, doses: []}\n- {label: a, doses: []}", "distinct"),
    ("[unclosed", "not valid YAML"),
])
def test_plan_cli_bad_candidates_exit_2(glucose_twin_file, tmp_path, capsys, text, message):
    cands = tmp_path / "c.yaml"
    cands.write_text(text)
    with pytest.raises(SystemExit) as e:
        plan_cli.main(["--twin", str(glucose_twin_file), "--history", str(_history_csv(tmp_path)), "--candidates", str(cands)])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_plan_cli_optimise_needs_bounds(glucose_twin_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plan_cli.main(["--twin", str(glucose_twin_file), "--history", str(_history_csv(tmp_path)), "--optimise"])
    assert e.value.code == 2 and "--max-dose" in capsys.readouterr().err


def test_monitor_cli_scores_a_stream_and_fails_on_a_bad_line(glucose_twin_file, tmp_path, capsys, rows_of):
    good = tmp_path / "s.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows_of(12)))
    out, png = tmp_path / "o.jsonl", tmp_path / "m.png"
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twin_file), "--stream", str(good), "--samples", "4", "--out", str(out), "--plot", str(png)])
    assert e.value.code == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 12 - 3 and all({"z", "alert", "mean", "std", "line"} <= set(r) for r in rows)
    assert png.stat().st_size > 1000
    bad = tmp_path / "b.jsonl"
    bad.write_text(good.read_text() + '{"time": 5, "code": "CGM", "value": "high"}\n')
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(glucose_twin_file), "--stream", str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "row=" + str(len(rows_of(12)) + 1) in err and "value must be a number" in err
    with pytest.raises(SystemExit) as e:
        monitor_cli.main(["--twin", str(tmp_path / "missing.pt"), "--stream", str(good)])
    assert e.value.code != 0

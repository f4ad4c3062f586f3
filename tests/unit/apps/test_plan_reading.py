"""twinode-plan reads its history and candidates by the reader's rules."""

from __future__ import annotations

import json

import pytest

from twinode.cli import plan as plan_cli


def _history(tmp_path, timestamps: bool):
    at = (lambda h: f"2100-01-01T{6 + int(h):02d}:{int(round(h % 1 * 60)):02d}:00") if timestamps else (lambda h: f"{h:.4f}")
    lines = ["subject_id,time,code,numeric_value,duration_h", f"1,{at(0)},STATIC//BODY_WEIGHT//kg,70,",
             f"1,{at(0)},INSULIN//BASAL//U/h,1.0,24", f"2,{at(0)},CGM//mg/dL,100,"]
    lines += [f"1,{at(k / 12)},CGM//mg/dL,{140 + k % 5}," for k in range(30)]
    p = tmp_path / ("meds.csv" if timestamps else "h.csv")
    p.write_text("\n".join(lines if timestamps else [ln for ln in lines if not ln.startswith("2,")]) + "\n")
    return p


def test_a_bolus_duration_in_a_candidate_is_ignored_and_reported(glucose_twin_file, tmp_path, capsys):
    cands = tmp_path / "c.yaml"
    cands.write_text("- label: bolus\n  doses: [{name: InsulinBolus, time_h: 3.0, amount: 4, duration_h: 1.5}]\n")
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        plan_cli.main(["--twin", str(glucose_twin_file), "--history", str(_history(tmp_path, False)), "--candidates", str(cands),
                       "--horizon", "2", "--samples", "4", "--out", str(out)])
    assert e.value.code == 0
    assert json.loads(out.read_text())["plans"][0]["doses"] == [{"name": "InsulinBolus", "time_h": 3.0, "amount": 4.0, "duration_h": 0.0}]
    assert "bolus_duration_ignored:InsulinBolus" in capsys.readouterr().err


def test_plan_reads_a_timestamped_subject_like_the_hour_history(glucose_twin_file, tmp_path, capsys):
    cands = tmp_path / "c.yaml"
    cands.write_text("- {label: none, doses: []}\n")
    args = ["--twin", str(glucose_twin_file), "--candidates", str(cands), "--horizon", "2", "--samples", "4"]
    with pytest.raises(SystemExit) as e:
        plan_cli.main(args + ["--history", str(_history(tmp_path, True)), "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and "twinode-plan --subject" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
    scores = []
    for extra in (["--history", str(_history(tmp_path, True)), "--subject", "1"], ["--history", str(_history(tmp_path, False))]):
        with pytest.raises(SystemExit) as e:
            plan_cli.main(args + extra + ["--out", str(tmp_path / "r.json")])
        assert e.value.code == 0
        scores.append(json.loads((tmp_path / "r.json").read_text())["plans"][0]["score"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)

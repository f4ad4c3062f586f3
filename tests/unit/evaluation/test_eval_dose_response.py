"""scripts/eval_dose_response.py on an exported twin of the embedded cohort's layout: the
twin's lift against the simulator's, and the simulator references beside it."""

import importlib.util
import sys

import torch

from tests.conftest import REPO
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.export.torchscript import export_twin
from twinode.models.twin import PatientTwin

NORMALISER = {"meas_mean": [85.0, 75.0, 0.8, 37.0], "meas_std": [12.0, 10.0, 0.4, 0.6],
              "static_mean": [62.0, 78.0, 0.5], "static_std": [14.0, 15.0, 0.5], "dose_scale": [8.0]}


def _run(monkeypatch, capsys, twin_path):
    spec = importlib.util.spec_from_file_location("eval_dose_response", REPO / "scripts" / "eval_dose_response.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["eval_dose_response.py", "--twin", str(twin_path), "--n-patients", "120",
                                      "--time-course", "--delays", "0.25,12"])
    script.main()
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_twins_lift_and_the_simulator_references(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    twin = PatientTwin(4, 3, 1, latent_dim=8, hidden=16, encoder_hidden=16, decoder="anchored", dose_readout=True)
    with torch.no_grad():  # MAP (channel 1) rises by 0.5 z-scores per normalised dose through the readout
        twin.dose_readout.gain[1, 0] = 0.5
    path = export_twin(twin.eval(), NORMALISER, feature_spec(), tmp_path / "twin.pt", solver={"name": "rk4", "step": 0.5})
    rows = _run(monkeypatch, capsys, path)
    cases, true_lift, twin_lift, ratio, _ = (float(c) for c in rows[1].strip("|").split("|"))
    assert cases > 0 and true_lift > 0 and twin_lift > 0
    assert abs(ratio - twin_lift / true_lift) < 0.01
    plan_alone, ideal, ideal_ratio, own_emax, twin_vs_plan, _ = (float(c) for c in rows[3].strip("|").split("|"))
    # Knowing each subject's drug effect tracks the truth better than the plan alone does; the
    # ideal observer (tests/unit/test_dose_response_truth.py) does at least as well as the plan.
    assert 0.0 < plan_alone < own_emax <= 1.0
    assert plan_alone <= ideal <= 1.0
    assert 0.8 < ideal_ratio < 1.2
    # This twin's only dose path is the readout's population chain: its lifts follow the plan's.
    assert twin_vs_plan > 0.5
    # A standard dose after a 24-h history: with the drug already given worn off (12 h), the
    # truth's spread across subjects is their own emax and half-life, which a population chain
    # cannot follow as well as the ideal observer; every subject of the split is a row's case.
    head = next(i for i, r in enumerate(rows) if "h after a 24-h history" in r)
    early, late = ([float(c) for c in rows[head + k].strip("|").split("|")] for k in (1, 2))
    assert early[0] == 0.25 and late[0] == 12 and early[1] == late[1] > 0
    assert late[2] > early[2] > 0  # less drug on board by 12 h: a larger true lift
    assert 0.8 < early[5] < 1.2 and 0.8 < late[5] < 1.2  # the ideal observer's lift ratio
    # Soon after the history the drug already given sets the lifts apart, which the plan tells;
    # by 12 h only each subject's own response does, which the history tells little of.
    assert early[6] > late[6] and early[6] > 0.5
    # The time course: the simulator's mean lift rises, then falls; the twin's follows its readout.
    simulator = [float(c) for c in rows[head + 4].strip("|").split("|")[1:]]
    twin_course = [float(c) for c in rows[head + 5].strip("|").split("|")[1:]]
    assert len(simulator) == len(twin_course) == 9
    assert simulator[0] < max(simulator) and simulator[-1] < max(simulator)
    assert twin_course[0] < max(twin_course) and min(twin_course) > 0

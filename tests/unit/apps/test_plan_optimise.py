"""twinode-plan --optimise: gradients through the scripted twin, the search fallback, and the
CLI end to end on a small trained glucose twin."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import compose_train
from twinode.apps import planning
from twinode.apps.planning import Objective, PlanSampler, SafetyBounds, optimise_plan
from twinode.cli import plan as plan_cli


@pytest.fixture(scope="module")
def trained_twin_file(tmp_path_factory):
    """A glucose twin trained for two epochs on 24 simulated patients (about 10 s)."""
    from twinode.training.pipeline import train

    root = tmp_path_factory.mktemp("plan_twin")
    cfg = compose_train(root, ["experiment=glucose", "data.source.n_patients=24", f"data.source.cache_dir={root}/cache",
                               "data.batch_size=8", "model.twin.latent_dim=8", "model.twin.hidden=16",
                               "model.twin.encoder_hidden=16", "trainer.max_epochs=2", "solver.step=1.0",
                               "logger=none", "registry.enabled=false", "callbacks.progress_bar=null"])
    return train(cfg).twin_path


def _hist():
    t = torch.arange(0, 4, 1 / 12)
    v = (160 + 25 * torch.sin(t)).unsqueeze(1)
    return (t, v, torch.ones_like(v), torch.tensor([70.0, 2.0, 40.0])), torch.tensor([[0.0, 2.0, 1.0, 24.0]])


def test_plan_sampler_is_the_twins_sample_with_finite_gradients(glucose_twin):
    twin, _ = glucose_twin
    hist, past = _hist()
    a = float(hist[0][-1])
    q = Objective(horizon_h=3.0).query(a)
    plan = torch.tensor([[a, 0.0, 60.0, 0.0], [a + 0.5, 1.0, 4.0, 0.0], [a + 1.0, 2.0, 0.5, 2.0]])
    doses = torch.cat([past, plan])
    with torch.no_grad():
        ref = twin.sample(*hist, doses, q, 8, 5)
    sampler = PlanSampler(twin, hist, q, 8, 5)
    for p in twin.parameters():
        p.requires_grad_(False)
    try:
        d = doses.clone().requires_grad_(True)
        out = sampler(d)
        torch.testing.assert_close(out.detach(), ref, rtol=1e-5, atol=1e-3)
        g, = torch.autograd.grad(out[..., 0].sum(), d)
    finally:
        for p in twin.parameters():
            p.requires_grad_(True)
    assert bool(torch.isfinite(g).all())
    assert g[1:, 2].abs().min() > 0 and g[1:, 0].abs().min() > 0  # amounts and times of the plan move glucose


def test_search_fallback_runs_after_a_gradient_run(glucose_twin, monkeypatch):
    """A scripted module that has run with gradients refuses inference tensors afterwards; the
    fallback must not depend on inference mode."""
    twin, _ = glucose_twin
    hist, past = _hist()
    a = float(hist[0][-1])
    meal = torch.tensor([[a, 0, 80.0, 0.0]])
    bounds = SafetyBounds(channel=1, max_dose=3.0, min_spacing_h=1.0, max_total=4.0, increment=0.1)
    obj = Objective(horizon_h=3.0)
    _, how = optimise_plan(twin, hist, past, meal, obj, bounds, num_samples=4, steps=2)
    assert how == "gradient"

    def no_gradient(*args, **kwargs):
        raise RuntimeError("no usable gradient")

    monkeypatch.setattr(planning, "_gradient_ascent", no_gradient)
    best, how = optimise_plan(twin, hist, past, meal, obj, bounds, num_samples=4)
    assert how == "search"
    ins = best.doses[best.doses[:, 1] == 1]
    assert ins.shape[0] == 0 or (float(ins[:, 2].max()) <= 3.0 and float(ins[:, 2].sum()) <= 4.0 + 1e-5)
    assert all(p.requires_grad for p in twin.parameters())  # the twin is handed back as it came


def test_gradient_ascent_climbs_a_smooth_objective_within_bounds():
    bounds = SafetyBounds(channel=0, max_dose=4.0, min_spacing_h=1.0, max_total=5.0)
    target = torch.tensor([1.0, 3.5, 0.0])
    a = planning._gradient_ascent(lambda x: -(x - target).square().sum(), 3, bounds, steps=150, lr=0.2)
    assert float(a.max()) <= 4.0 and float(a.min()) >= 0.0
    torch.testing.assert_close(a, torch.tensor([1.0, 3.5, 0.0]), atol=0.15, rtol=0)


def _history_csv(tmp_path):
    lines = ["subject_id,time,code,numeric_value,duration_h", "1,0,STATIC//BODY_WEIGHT//kg,70,", "1,0,STATIC//AGE_GROUP,2,",
             "1,0,STATIC//AGE//years,40,", "1,0,INSULIN//BASAL//U/h,1.0,24", "1,1.0,MEAL//CHO//g,60,", "1,1.0,INSULIN//BOLUS//U,4,"]
    lines += [f"1,{k / 12:.4f},CGM//mg/dL,{150 + 40 * torch.sin(torch.tensor(k / 20)).item():.1f}," for k in range(48)]
    p = tmp_path / "h.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_plan_cli_optimises_a_trained_twin_by_gradient(trained_twin_file, tmp_path, capsys):
    base = tmp_path / "meal.yaml"
    base.write_text("- label: lunch\n  doses: [{name: Carbs, time_h: 4.0, amount: 70}]\n")
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        plan_cli.main(["--twin", str(trained_twin_file), "--history", str(_history_csv(tmp_path)), "--optimise",
                       "--dose", "InsulinBolus", "--max-dose", "6", "--min-spacing", "1.5", "--max-total", "8", "--low", "70", "--high", "180",
                       "--base", str(base), "--horizon", "4", "--samples", "8", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert "optimised by gradient" in err and "Traceback" not in err
    plan = json.loads(out.read_text())["plans"][0]
    ins = [d for d in plan["doses"] if d["name"] == "InsulinBolus"]
    assert any(d["name"] == "Carbs" and d["amount"] == 70 for d in plan["doses"])  # the base plan stays
    assert all(0 < d["amount"] <= 6 for d in ins) and sum(d["amount"] for d in ins) <= 8 + 1e-6
    times = sorted(d["time_h"] for d in ins)
    assert all(b - a >= 1.5 - 1e-5 for a, b in zip(times, times[1:]))
    assert plan["label"] in ("optimised", "no_extra_dose") and -3.0 <= plan["score"] <= 1.0

"""UVA/Padova model: the simglucose reference numbers, batching, physiology sanity, bad inputs."""

import json
from pathlib import Path

import polars as pl
import pytest
import torch

from tests.conftest import SHARED_DATA
from twinode.data.simulators.glucose_scenarios import load_scenarios, simulate_scenarios
from twinode.data.simulators.uva_padova import N_STATES, UVAPadovaSimulator, linear_form, load_patients, patient_names, vector_field, nonneg_mask
from twinode.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "glucose"
REFERENCE = SHARED_DATA / "simglucose-reference"


def _max_gsub_error(scenario_file: Path, reference: pl.DataFrame) -> dict[str, float]:
    ours = simulate_scenarios(load_scenarios(scenario_file))
    joined = ours.join(reference, on=["scenario", "minute"], suffix="_ref")
    assert joined.height == ours.height == reference.height
    err = joined.group_by("scenario").agg((pl.col("gsub_mg_dl") - pl.col("gsub_mg_dl_ref")).abs().max().alias("e"))
    return dict(err.iter_rows())


def test_matches_reference_fixture_within_1_mg_dl():
    errors = _max_gsub_error(FIXTURES / "scenarios_8h.json", pl.read_parquet(FIXTURES / "trajectories_8h.parquet"))
    assert set(errors) == {"s0", "s1", "s2"}
    assert max(errors.values()) <= 1.0, errors


@pytest.mark.shared_data
@pytest.mark.skipif(not (REFERENCE / "trajectories.parquet").exists(), reason="shared reference data absent")
def test_matches_full_reference_within_1_mg_dl():
    errors = _max_gsub_error(REFERENCE / "scenarios.json", pl.read_parquet(REFERENCE / "trajectories.parquet"))
    assert len(errors) == 6
    assert max(errors.values()) <= 1.0, errors


def test_fixture_states_match_reference():
    ref = pl.read_parquet(FIXTURES / "trajectories_8h.parquet").sort(["scenario", "minute"])
    ours = simulate_scenarios(load_scenarios(FIXTURES / "scenarios_8h.json")).sort(["scenario", "minute"])
    for k in range(N_STATES):
        a, b = ours[f"x{k}"].to_numpy(), ref[f"x{k}"].to_numpy()
        assert abs(a - b).max() <= 1e-3 * (1 + abs(b).max()), f"state x{k}"


def test_batch_equals_one_patient_at_a_time():
    names = ["adult#003", "child#007", "adolescent#010"]
    T = 150
    meals = torch.zeros(3, T, dtype=torch.float64)
    meals[:, 30] = torch.tensor([60.0, 30.0, 45.0])
    batch = load_patients(names)
    insulin = batch.basal_u_per_min()[:, None].repeat(1, T)
    insulin[:, 25] += torch.tensor([6.0, 1.5, 4.0])
    together = UVAPadovaSimulator(batch).simulate(meals, insulin)
    for i, name in enumerate(names):
        alone = UVAPadovaSimulator(load_patients([name])).simulate(meals[i:i + 1], insulin[i:i + 1])
        torch.testing.assert_close(together.states[i], alone.states[0], rtol=1e-12, atol=1e-9)


def test_fast_field_equals_readable_field():
    p = load_patients(patient_names())
    g = torch.Generator().manual_seed(0)
    x = p.x0 * (0.5 + torch.rand(p.x0.shape, generator=g, dtype=torch.float64))
    x[:5, 3] = -1.0  # the non-negativity guard
    dbar = torch.where(torch.arange(30) % 2 == 0, torch.tensor(40000.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    cho, ins = torch.full((30,), 5000.0, dtype=torch.float64), torch.full((30,), 20.0, dtype=torch.float64)
    from twinode.data.simulators.uva_padova import _fast_field

    rows, cols, values, c, q = linear_form(p.params)
    u = torch.zeros_like(c)
    u[:, 0], u[:, 10] = cho, ins
    fast = _fast_field(x, rows, cols, values, c + u, q, dbar, nonneg_mask())
    torch.testing.assert_close(fast, vector_field(x, cho, ins, dbar, p.params), rtol=1e-12, atol=1e-10)


def test_basal_steady_state_holds_without_meals():
    p = load_patients(["adolescent#001", "adult#005", "child#002"])
    T = 600
    res = UVAPadovaSimulator(p).simulate(torch.zeros(T, dtype=torch.float64), p.basal_u_per_min()[:, None].repeat(1, T))
    drift = (res.gsub - res.gsub[:, :1]).abs().max()
    assert drift < 1.0, f"glucose drifted {drift:.3f} mg/dL at the steady-state basal rate"


def test_meal_mass_balance_and_insulin_lowers_glucose():
    p = load_patients(["adult#001", "adult#001"])
    T = 720
    meals = torch.zeros(2, T, dtype=torch.float64)
    meals[:, 60] = 50.0
    insulin = p.basal_u_per_min()[:, None].repeat(1, T)
    insulin[1, 60] += 5.0
    res = UVAPadovaSimulator(p).simulate(meals, insulin)
    assert torch.allclose(res.eaten_g.sum(1), torch.tensor([50.0, 50.0], dtype=torch.float64))
    assert res.eaten_g[0, 60:70].tolist() == [5.0] * 10  # eaten at 5 g/min
    x = res.states[0]
    absorbed = torch.trapezoid(p.params["kabs"][0] * x[:, 2])  # mg through the gut wall
    in_gut = x[-1, 0] + x[-1, 1] + x[-1, 2]
    assert abs((absorbed + in_gut).item() - 50_000.0) < 0.005 * 50_000.0
    assert in_gut < 0.01 * 50_000.0  # digested within 11 h
    peak_no_bolus, peak_bolus = res.gsub[0].max(), res.gsub[1].max()
    assert peak_bolus < peak_no_bolus - 20.0
    assert res.gsub[1, 240] < res.gsub[0, 240]


def test_policy_adds_insulin_and_is_recorded():
    p = load_patients(["adult#002"])
    T = 120
    basal = p.basal_u_per_min()[:, None].repeat(1, T)
    policy = lambda minute, g: torch.full_like(g, 2.0) if minute == 10 else None  # noqa: E731
    res = UVAPadovaSimulator(p).simulate(torch.zeros(T, dtype=torch.float64), basal, policy=policy)
    assert torch.allclose(res.insulin_u_per_min[0, 10], basal[0, 10] + 2.0)
    assert torch.allclose(res.insulin_u_per_min[0, 11], basal[0, 11])
    plain = UVAPadovaSimulator(p).simulate(torch.zeros(T, dtype=torch.float64), basal)
    assert res.gsub[0, -1] < plain.gsub[0, -1]


def test_float32_stays_close_to_float64():
    T = 240
    runs = []
    for dtype in (torch.float64, torch.float32):
        p = load_patients(["adolescent#001", "child#001"], dtype=dtype)
        meals = torch.zeros(2, T, dtype=dtype)
        meals[:, 20] = 60.0
        insulin = p.basal_u_per_min()[:, None].repeat(1, T)
        insulin[:, 20] += 3.0
        runs.append(UVAPadovaSimulator(p).simulate(meals, insulin, keep_states=False).gsub.double())
    assert (runs[0] - runs[1]).abs().max() < 0.5


@pytest.mark.parametrize("bad, match", [
    (dict(names=["adult#011"]), "adult#011"),
    (dict(meals=torch.zeros(2, 10)), "meals_g"),
    (dict(insulin=torch.full((10,), float("nan"))), "non-finite"),
    (dict(insulin=-torch.ones(10)), "negative"),
    (dict(substeps=0), "substeps"),
])
def test_bad_inputs_raise_clear_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        p = load_patients(bad.get("names", ["adult#001"]))
        sim = UVAPadovaSimulator(p, bad.get("substeps", 1))
        sim.simulate(bad.get("meals", torch.zeros(10)), bad.get("insulin", torch.zeros(10)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_gpu_like_on_cpu():
    s = load_scenarios(FIXTURES / "scenarios_8h.json")
    a = simulate_scenarios(s)["gsub_mg_dl"].to_numpy()
    b = simulate_scenarios(s, device="cuda")["gsub_mg_dl"].to_numpy()
    assert abs(a - b).max() < 1e-6

"""Simulated type-1 diabetes cohort as a MEDS dataset, with a counterfactual companion set.

``generate_glucose_cohort(out, n_patients, days, seed)`` writes::

    out/data/{train,tuning,held_out}/0.parquet   CGM every 5 min (sensor noise), meals,
                                                 insulin boluses and basal infusions, statics
    out/metadata/{codes,subject_splits,patients}.parquet, dataset.json
    out/metadata/behaviour.parquet               labelled plan variations: missed, late and doubled
                                                 boluses, corrections, temporary basal rates
    out/truth.parquet                            noise-free CGM glucose (subject_id, minute, gsub_mg_dl)
    out/counterfactual/                          the held-out subjects again: same virtual
        data/held_out/0.parquet                  patient, meals, initial state and sensor
        metadata/arms.parquet                    noise, but an alternative insulin plan from
        truth.parquet                            ``branch_minute`` on (identical before it)

Subjects are the 30 virtual patients drawn with replacement; each day's behaviour is drawn
by :mod:`glucose_behaviour`. ``training_variation`` widens the train and tuning subjects'
plans (:func:`glucose_behaviour.widen_plan`: meal boluses given at twice their dose, temporary
basal rates of 4-8 h) from a random stream of their own, so the held-out subjects and their
counterfactual companion are the same with or without it; the default leaves every plan as
drawn (docs/counterfactual.md measures both). Everything follows from ``seed``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from twinode.data.simulators.cgm_sensor import CGMSensor
from twinode.data.simulators.glucose_behaviour import (MINUTES_PER_DAY, Behaviour, CorrectionPolicy, TrainingVariation,
                                                      draw_plan, widen_plan)
from twinode.data.simulators.uva_padova import UVAPadovaSimulator, load_patients, patient_names
from twinode.errors import ConfigError

CGM, MEAL, BOLUS, BASAL, BASAL_END = "CGM//mg/dL", "MEAL//CHO//g", "INSULIN//BOLUS//U", "INSULIN//BASAL//U/h", "INSULIN//BASAL_END"
WEIGHT, AGE_GROUP, AGE = "STATIC//BODY_WEIGHT//kg", "STATIC//AGE_GROUP", "STATIC//AGE//years"
AGE_GROUPS = {"child": 0, "adolescent": 1, "adult": 2}
CGM_EVERY_MIN = 5
EPOCH = datetime(2021, 1, 4)  # a Monday, midnight: minute 0 of every subject
# Alternative insulin plans from the branch minute on: (bolus factor, basal factor).
ARMS = {"no_bolus": (0.0, 1.0), "double_bolus": (2.0, 1.0), "basal_suspend": (1.0, 0.0), "double_basal": (1.0, 2.0)}
_DESCRIBE = {CGM: "CGM glucose reading with sensor noise (mg/dL)", MEAL: "meal start, carbohydrates (g)",
             BOLUS: "insulin bolus (U)", BASAL: "basal insulin rate from here (U/h)", BASAL_END: "basal rate segment ends",
             WEIGHT: "body weight (kg)", AGE_GROUP: "0 child, 1 adolescent, 2 adult", AGE: "age (years)"}


@dataclass
class CohortReport:
    subjects: int
    days: int
    events: int
    counterfactual_subjects: int
    seconds: float
    splits: dict = field(default_factory=dict)


def _quest() -> dict[str, dict[str, float]]:
    from importlib import resources

    text = resources.files("twinode.data.simulators").joinpath("data", "quest.csv").read_text()
    return {r["Name"]: {k: float(v) for k, v in r.items() if k != "Name"} for r in csv.DictReader(text.splitlines())}


def _splits(n: int, rng: np.random.Generator) -> np.ndarray:
    n_eval = max(1, round(0.1 * n)) if n >= 3 else 0
    split = np.array(["train"] * n, dtype=object)
    order = rng.permutation(n)
    split[order[:n_eval]] = "held_out"
    split[order[n_eval: 2 * n_eval]] = "tuning"
    return split


def generate_glucose_cohort(out: str | Path, n_patients: int, days: int, seed: int, branch_minute: int | None = None,
                            device: str = "cpu", behaviour: Behaviour = Behaviour(),
                            training_variation: TrainingVariation | None = None) -> CohortReport:
    """Simulate and write the cohort (layout in the module docstring); ``branch_minute``
    defaults to 6 h before the end; ``training_variation`` None leaves every plan as drawn."""
    if not isinstance(n_patients, int) or n_patients < 1:
        raise ConfigError("patients", n_patients, hint="an integer >= 1")
    if not isinstance(days, int) or days < 1:
        raise ConfigError("days", days, hint="an integer >= 1")
    T = days * MINUTES_PER_DAY
    branch = T - 6 * 60 if branch_minute is None else int(branch_minute)
    if not 0 < branch < T:
        raise ConfigError("branch_minute", branch_minute, hint=f"a minute in (0, {T})")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    names = patient_names()
    chosen = [names[i] for i in rng.integers(0, len(names), n_patients)]
    quest = _quest()
    patients = load_patients(chosen, device=device)
    p = {k: v.cpu().numpy() for k, v in patients.params.items()}
    cr = np.array([quest[n]["CR"] for n in chosen])
    cf = np.array([quest[n]["CF"] for n in chosen])
    plan = draw_plan(rng, p["BW"], cr, cf, patients.basal_u_per_min().cpu().numpy(), days, behaviour)
    split = _splits(n_patients, rng)
    if training_variation is not None:
        widen_plan(plan, np.nonzero(split != "held_out")[0], np.random.default_rng([int(seed), 1_000_003]),
                   training_variation)
    gen = torch.Generator().manual_seed(int(seed))
    # Sensor error per minute; readings every 5 min use every 5th value, so the AR(1)
    # correlation is per reading and the factual and counterfactual arms share it.
    n_read = T // CGM_EVERY_MIN + 1
    err = CGMSensor().noise((n_patients, n_read), gen)
    err_per_min = err.repeat_interleave(CGM_EVERY_MIN, 1)[:, : T + 1]
    x0 = patients.x0.clone()
    for k in (3, 4, 12):  # plasma, tissue and subcutaneous glucose
        x0[:, k] = x0[:, k] * plan.glucose_scale.to(x0)

    sim = UVAPadovaSimulator(patients)
    insulin = (plan.basal_u_per_min + plan.meal_bolus_u).to(device)
    fact = sim.simulate(plan.meals_g.to(device), insulin, x0=x0, keep_states=False,
                        policy=CorrectionPolicy(plan, behaviour, err_per_min))
    bolus = (fact.insulin_u_per_min.cpu() - plan.basal_u_per_min).clamp(min=0.0)
    sensor = CGMSensor()
    read_idx = torch.arange(0, T + 1, CGM_EVERY_MIN)
    truth = fact.gsub.cpu()[:, read_idx]
    cgm = torch.clamp(truth + err, sensor.min_mg_dl, sensor.max_mg_dl)

    ids = np.arange(1, n_patients + 1, dtype=np.int64)
    age = np.array([quest[n]["Age"] for n in chosen])
    group = np.array([AGE_GROUPS[n.split("#")[0]] for n in chosen], dtype=float)
    statics = {WEIGHT: p["BW"], AGE_GROUP: group, AGE: age}
    basal_segments = basal_runs(plan.basal_u_per_min.numpy())
    events = _events(ids, cgm.numpy(), plan.meals_g.numpy(), bolus.numpy(), basal_segments, statics)
    out = Path(out)
    _write_meds(out, events, ids, split, "Simulated T1D cohort (UVA/Padova 2008)")
    _truth(ids, truth.numpy()).write_parquet(out / "truth.parquet")
    pl.DataFrame({"subject_id": ids, "virtual_patient": chosen, "body_weight_kg": p["BW"], "age_years": age,
                  "age_group": group.astype(np.int64), "cr_g_per_u": cr, "cf_mg_dl_per_u": cf,
                  "basal_u_per_h": plan.basal_rate_u_per_min.numpy() * 60, "split": split.astype(str)}
                 ).write_parquet(out / "metadata" / "patients.parquet")
    _behaviour(ids, plan, bolus).write_parquet(out / "metadata" / "behaviour.parquet")

    held = np.nonzero(split == "held_out")[0]
    n_cf = _counterfactual(out / "counterfactual", held, ids, chosen, plan, bolus, x0, err, statics, branch, device) if len(held) else 0
    return CohortReport(n_patients, days, events.height, n_cf, time.perf_counter() - start,
                        {s: int((split == s).sum()) for s in ("train", "tuning", "held_out")})


def _counterfactual(cf_dir: Path, held, ids, chosen, plan, bolus, x0, err, statics, branch: int, device: str) -> int:
    """Each held-out subject under every arm: realised inputs up to ``branch``, the arm's plan after."""
    T = plan.meals_g.shape[1]
    sensor = CGMSensor()
    rows = np.repeat(held, len(ARMS))
    arm_names = list(ARMS) * len(held)
    bf = torch.tensor([ARMS[a][0] for a in arm_names], dtype=torch.float64)[:, None]
    sf = torch.tensor([ARMS[a][1] for a in arm_names], dtype=torch.float64)[:, None]
    after = (torch.arange(T) >= branch)[None, :]
    cf_bolus = torch.where(after, bolus[rows] * bf, bolus[rows])
    cf_basal = torch.where(after, plan.basal_u_per_min[rows] * sf, plan.basal_u_per_min[rows])
    sim = UVAPadovaSimulator(load_patients([chosen[i] for i in rows], device=device))
    res = sim.simulate(plan.meals_g[rows].to(device), (cf_basal + cf_bolus).to(device), x0=x0[rows], keep_states=False)
    truth = res.gsub.cpu()[:, torch.arange(0, T + 1, CGM_EVERY_MIN)]
    cgm = torch.clamp(truth + err[rows], sensor.min_mg_dl, sensor.max_mg_dl)
    cf_ids = 1_000_000 + ids[rows] * 10 + np.array([list(ARMS).index(a) + 1 for a in arm_names])
    segs = basal_runs(cf_basal.numpy())
    events = _events(cf_ids, cgm.numpy(), plan.meals_g[rows].numpy(), cf_bolus.numpy(), segs,
                     {k: v[rows] for k, v in statics.items()})
    _write_meds(cf_dir, events, cf_ids, np.array(["held_out"] * len(rows), dtype=object),
                "Counterfactual insulin plans for the held-out subjects of the simulated T1D cohort")
    _truth(cf_ids, truth.numpy()).write_parquet(cf_dir / "truth.parquet")
    pl.DataFrame({"subject_id": cf_ids, "factual_subject_id": ids[rows], "arm": arm_names,
                  "branch_minute": np.full(len(rows), branch, np.int64),
                  "bolus_factor": bf[:, 0].numpy(), "basal_factor": sf[:, 0].numpy()}
                 ).write_parquet(cf_dir / "metadata" / "arms.parquet")
    return len(rows)


def basal_runs(basal_u_per_min: np.ndarray) -> list[list[tuple[int, int, float]]]:
    """Per subject, the basal rate ``[B, T]`` (U/min) as runs ``(start, end, rate)`` of equal rate
    (a temporary rate is a run of its own; a suspension is a run of rate 0)."""
    out = []
    for row in np.asarray(basal_u_per_min, float):
        edges = np.concatenate([[0], np.nonzero(np.diff(row) != 0)[0] + 1, [len(row)]])
        out.append([(int(a), int(b), float(row[a])) for a, b in zip(edges[:-1], edges[1:])])
    return out


def _behaviour(ids, plan, realised_bolus) -> pl.DataFrame:
    """The labelled decisions of the plan, plus the correction boluses the policy gave (the
    realised insulin above the planned meal boluses)."""
    ev = plan.events
    corr = (realised_bolus - plan.meal_bolus_u).clamp(min=0.0).numpy()
    r, m = np.nonzero(corr > 1e-9)
    nan = np.full(len(r), np.nan)
    return pl.DataFrame({
        "subject_id": np.concatenate([ids[ev["row"].astype(int)], ids[r]]).astype(np.int64),
        "minute": np.concatenate([ev["minute"], m]).astype(np.int64),
        "kind": np.concatenate([ev["kind"].astype(str), np.full(len(r), "correction")]),
        "units": np.concatenate([ev["units"], corr[r, m]]),
        "duration_min": np.concatenate([ev["duration_min"], nan]),
        "factor": np.concatenate([ev["factor"], nan]),
    }).sort(["subject_id", "minute"])


def _events(ids, cgm, meals, bolus, basal_segments, statics) -> pl.DataFrame:
    """Long events (subject_id, minute, code, numeric_value) for subjects ``ids`` (row-aligned arrays)."""
    B, n_read = cgm.shape
    parts = [pl.DataFrame({"subject_id": np.repeat(ids, n_read), "minute": np.tile(np.arange(n_read) * CGM_EVERY_MIN, B),
                           "code": CGM, "numeric_value": cgm.reshape(-1)})]
    for code, arr in ((MEAL, meals), (BOLUS, bolus)):
        r, m = np.nonzero(arr > 1e-9)
        parts.append(pl.DataFrame({"subject_id": ids[r], "minute": m, "code": code, "numeric_value": arr[r, m]}))
    rows = []
    for i, segs in enumerate(basal_segments):
        for a, b, rate in segs:
            rows += [(ids[i], a, BASAL, rate * 60.0), (ids[i], b, BASAL_END, None)]
    parts.append(pl.DataFrame(rows, schema={"subject_id": pl.Int64, "minute": pl.Int64, "code": pl.String,
                                            "numeric_value": pl.Float64}, orient="row"))
    for code, values in statics.items():
        parts.append(pl.DataFrame({"subject_id": ids, "minute": 0, "code": code, "numeric_value": np.asarray(values, float)}))
    cast = [pl.col("subject_id").cast(pl.Int64), pl.col("minute").cast(pl.Int64), pl.col("code").cast(pl.String),
            pl.col("numeric_value").cast(pl.Float32)]
    ev = pl.concat([df.select(cast) for df in parts])
    ev = ev.with_columns((pl.lit(EPOCH) + pl.duration(minutes=pl.col("minute"))).cast(pl.Datetime("us")).alias("time"))
    return ev.sort(["subject_id", "minute"], maintain_order=True).select("subject_id", "time", "code", "numeric_value")


def _truth(ids, truth) -> pl.DataFrame:
    B, n = truth.shape
    return pl.DataFrame({"subject_id": np.repeat(ids, n), "minute": np.tile(np.arange(n) * CGM_EVERY_MIN, B).astype(np.int64),
                         "gsub_mg_dl": truth.reshape(-1)})


def _write_meds(out: Path, events: pl.DataFrame, ids: np.ndarray, split: np.ndarray, title: str) -> None:
    data_dir, meta = out / "data", out / "metadata"
    for old in data_dir.rglob("*.parquet") if data_dir.exists() else []:
        old.unlink()  # a stale shard from an earlier run would mix into the dataset
    splits = pl.DataFrame({"subject_id": ids, "split": split.astype(str)})
    schema = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()), ("numeric_value", pa.float32())])
    ev = events.join(splits, on="subject_id", how="left", maintain_order="left")
    for name in ("train", "tuning", "held_out"):
        part = ev.filter(pl.col("split") == name).drop("split")
        if part.height:
            (data_dir / name).mkdir(parents=True, exist_ok=True)
            pq.write_table(part.to_arrow().cast(schema), data_dir / name / "0.parquet")
    meta.mkdir(parents=True, exist_ok=True)
    pq.write_table(splits.to_arrow().cast(pa.schema([("subject_id", pa.int64()), ("split", pa.string())])), meta / "subject_splits.parquet")
    codes = sorted(events["code"].unique().to_list())
    pq.write_table(pa.table({"code": pa.array(codes, pa.string()), "description": pa.array([_DESCRIBE[c] for c in codes], pa.string()),
                             "parent_codes": pa.array([None] * len(codes), pa.list_(pa.string()))}), meta / "codes.parquet")
    (meta / "dataset.json").write_text(json.dumps({
        "dataset_name": title, "dataset_version": "1", "etl_name": "twinode.simulators.glucose_cohort", "etl_version": "1",
        "meds_version": "0.4", "time_anchor": f"minute 0 of every subject is {EPOCH.isoformat()} (midnight)"}, indent=1))

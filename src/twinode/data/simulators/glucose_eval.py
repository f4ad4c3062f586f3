"""What-if evaluation on a simulated cohort: the twin's forecast under each insulin plan vs
the simulator's noise-free truth.

For every held-out subject the history is its factual record up to the branch minute (the
same for every arm); the plan is the arm's meals and insulin after it. Forecasts are scored
against the truth at 30 min, 2 h and 6 h, and over the whole 6-h horizon for time in range
(70-180 mg/dL) and Clarke error grid zones. The *effect* error compares the predicted
difference between an arm and the factual plan with the true difference: a forecaster that
ignores the plan (last observation carried forward) has effect 0 and pays the whole effect.
The effect is also scored against the truth clamped to the sensor's range (39-400 mg/dL, what
the CGM shows and a twin.pt returns), with the floor that clamping sets for any forecaster.

Forecasters: ``twin`` (the twin under the arm's plan), ``twin_plan_blind`` (the same twin
given the factual plan on every arm: its own forecast, blind to the change), ``locf`` (the
last reading) and ``bolus_rule`` (the last reading plus the bolus-calculator rule's effect of
the arm's insulin change with the patient's true correction factor,
:mod:`twinode.evaluation.bolus_rule`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

if TYPE_CHECKING:
    from twinode.data.schema import FeatureSpec
    from twinode.data.tensorize import SubjectRecord

HORIZONS_H = (0.5, 2.0, 6.0)
# What the CGM can show (cgm_sensor.CGMSensor's clamp) and a twin.pt returns (the valid range
# of its CGM channel): glucose outside it is not observable by the sensor the twin learns from.
SENSOR_RANGE_MG_DL = (39.0, 400.0)
STEP_H = 5.0 / 60.0
EPOCH = datetime(2021, 1, 4)  # minute 0 of every simulated subject (glucose_cohort.EPOCH)
BOLUS, BASAL, BASAL_END = "INSULIN//BOLUS//U", "INSULIN//BASAL//U/h", "INSULIN//BASAL_END"


def clarke_zones(reference: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Clarke error grid zone (``"A"``..``"E"``) of each (reference, predicted) pair in mg/dL."""
    r, p = np.asarray(reference, float), np.asarray(predicted, float)
    zone = np.full(r.shape, "B", dtype="<U1")
    a = ((r <= 70) & (p <= 70)) | ((p <= 1.2 * r) & (p >= 0.8 * r))
    e = ((r >= 180) & (p <= 70)) | ((r <= 70) & (p >= 180))
    c = ((r >= 70) & (r <= 290) & (p >= r + 110)) | ((r >= 130) & (r <= 180) & (p <= 7.0 / 5.0 * r - 182))
    d = (((r >= 240) & (p >= 70) & (p <= 180)) | ((r <= 175.0 / 3.0) & (p <= 180) & (p >= 70))
         | ((r >= 175.0 / 3.0) & (r <= 70) & (p >= 6.0 / 5.0 * r)))
    for mask, name in ((d, "D"), (c, "C"), (e, "E"), (a, "A")):  # later rules win, A first in priority
        zone[mask] = name
    return zone


def time_in_range(glucose: np.ndarray, low: float = 70.0, high: float = 180.0) -> np.ndarray:
    """Share of readings in [low, high] along the last axis."""
    g = np.asarray(glucose, float)
    return ((g >= low) & (g <= high)).mean(-1)


@dataclass
class ArmForecasts:
    arm: str
    truth: np.ndarray  # [S, Q] noise-free glucose after the branch
    forecasts: dict[str, np.ndarray]  # forecaster -> [S, Q]


def _records(path: Path, spec: FeatureSpec) -> tuple[dict[int, SubjectRecord], dict[int, str]]:
    """The cohort folder's tensorized records by subject id, and its splits."""
    from twinode.data.sources import MedsSource

    loaded = MedsSource(str(path), spec, use_cache=False).load()
    if loaded.records is None:  # MedsSource always tensorizes (and caches) itself
        raise TypeError(f"MedsSource({path}) returned no tensorized records")
    return {r.subject_id: r for r in loaded.records}, loaded.splits


def _truth(path: Path, ids: list[int], minutes: np.ndarray) -> np.ndarray:
    t = pl.read_parquet(path).filter(pl.col("subject_id").is_in(ids) & pl.col("minute").is_in(minutes.tolist()))
    t = t.sort(["subject_id", "minute"])
    out = {sid: g.sort("minute")["gsub_mg_dl"].to_numpy() for (sid,), g in t.group_by("subject_id")}
    return np.stack([out[i] for i in ids])


def insulin_per_minute(path: Path, ids: list[int], n_minutes: int) -> np.ndarray:
    """Insulin (U) given in each minute ``0..n_minutes-1`` per subject, from the raw events of a
    simulated cohort folder: boluses at their minute, basal rates (U/h) / 60 in every minute of
    their segment (a rate runs until its ``INSULIN//BASAL_END`` or the next rate)."""
    ev = pl.read_parquet(sorted(path.glob("data/*/*.parquet")))
    ev = ev.filter(pl.col("subject_id").is_in(ids) & pl.col("code").is_in([BOLUS, BASAL, BASAL_END]))
    ev = ev.with_columns(((pl.col("time") - pl.lit(EPOCH)).dt.total_seconds() // 60).cast(pl.Int64).alias("minute"))
    # Within a minute, an end comes before a new rate.
    ev = ev.with_columns(pl.when(pl.col("code") == BASAL_END).then(0).otherwise(1).alias("_order"))
    out = np.zeros((len(ids), n_minutes))
    row = {sid: k for k, sid in enumerate(ids)}
    for (sid,), g in ev.sort(["subject_id", "minute", "_order"]).group_by("subject_id", maintain_order=True):
        u = out[row[sid]]
        rate, since = 0.0, 0
        for code, minute, value in zip(g["code"].to_list(), g["minute"].to_list(), g["numeric_value"].to_list()):
            if code == BOLUS:
                if 0 <= minute < n_minutes:
                    u[minute] += float(value)
                continue
            u[min(since, n_minutes): min(max(minute, 0), n_minutes)] += rate / 60.0
            rate, since = (float(value), max(minute, 0)) if code == BASAL else (0.0, max(minute, 0))
        u[min(since, n_minutes):] += rate / 60.0
    return out


def forecast_arms(twin, cohort: str | Path, spec: FeatureSpec, horizon_h: float = 6.0) -> list[ArmForecasts]:
    """Twin, plan-blind twin, LOCF, subject-mean (the history's CGM mean), population-mean (the
    train split's CGM mean) and bolus-rule forecasts for every held-out subject under the
    factual plan and each arm (see the module docstring)."""
    from twinode.evaluation.bolus_rule import rule_effect

    cohort = Path(cohort)
    arms = pl.read_parquet(cohort / "counterfactual" / "metadata" / "arms.parquet")
    branch_min = int(arms["branch_minute"][0])
    branch_h = branch_min / 60.0
    factual, splits = _records(cohort, spec)
    counterfactual, _ = _records(cohort / "counterfactual", spec)
    held = sorted(arms["factual_subject_id"].unique().to_list())
    n_q = int(round(horizon_h / STEP_H))
    query = torch.tensor([branch_h + STEP_H * (k + 1) for k in range(n_q)], dtype=torch.float32)
    minutes = branch_min + 5 * np.arange(1, n_q + 1)
    n_min = int(minutes[-1]) + 1
    patients = pl.read_parquet(cohort / "metadata" / "patients.parquet").select("subject_id", "cf_mg_dl_per_u")
    cf = dict(zip(patients["subject_id"].to_list(), patients["cf_mg_dl_per_u"].to_list()))
    cf_held = np.array([cf[i] for i in held])
    insulin_factual = insulin_per_minute(cohort, held, n_min)
    train = [r for sid, r in factual.items() if splits.get(sid, "train") == "train"]
    population = float(np.concatenate([r.values[r.mask[:, 0] > 0, 0] for r in train]).mean())

    def run(records) -> dict[str, np.ndarray]:
        twin_f, locf, subject = [], [], []
        for r in records:
            hist = r.times <= branch_h + 1e-4
            times = torch.from_numpy(r.times[hist])
            values, mask = torch.from_numpy(r.values[hist]), torch.from_numpy(r.mask[hist])
            with torch.no_grad():
                mean, _ = twin.forecast(times, values, mask, torch.from_numpy(r.static), torch.from_numpy(r.doses), query)
            twin_f.append(mean[:, 0].numpy())
            seen = r.mask[hist, 0] > 0
            locf.append(np.full(n_q, r.values[hist][seen, 0][-1]))
            subject.append(np.full(n_q, r.values[hist][seen, 0].mean()))
        return {"twin": np.stack(twin_f), "locf": np.stack(locf), "subject_mean": np.stack(subject),
                "population_mean": np.full((len(records), n_q), population)}

    base = run([factual[i] for i in held])
    base["twin_plan_blind"] = base["twin"]
    base["bolus_rule"] = base["locf"]
    out = [ArmForecasts("factual", _truth(cohort / "truth.parquet", held, minutes), base)]
    for arm in arms["arm"].unique(maintain_order=True).to_list():
        rows = arms.filter(pl.col("arm") == arm).sort("factual_subject_id")
        ids = rows["subject_id"].to_list()
        assert rows["factual_subject_id"].to_list() == held
        f = run([counterfactual[i] for i in ids])
        change = insulin_per_minute(cohort / "counterfactual", ids, n_min) - insulin_factual
        f["twin_plan_blind"] = base["twin"]
        f["bolus_rule"] = f["locf"] + rule_effect(change, cf_held, minutes)
        out.append(ArmForecasts(arm, _truth(cohort / "counterfactual" / "truth.parquet", ids, minutes), f))
    return out


def score(arms: list[ArmForecasts]) -> list[dict]:
    """One row per (arm, forecaster): RMSE at each horizon, effect RMSE, TIR error, Clarke A+B."""
    factual = next(a for a in arms if a.arm == "factual")
    rows = []
    for a in arms:
        for name, pred in a.forecasts.items():
            row = {"arm": a.arm, "forecaster": name, "subjects": int(a.truth.shape[0])}
            for h in HORIZONS_H:
                k = int(round(h / STEP_H)) - 1
                row[f"rmse_{h:g}h"] = float(np.sqrt(np.mean((pred[:, k] - a.truth[:, k]) ** 2)))
            if a.arm != "factual":
                k = len(a.truth[0]) - 1
                pred_effect = pred[:, k] - factual.forecasts[name][:, k]
                true_effect = a.truth[:, k] - factual.truth[:, k]
                row["effect_rmse_6h"] = float(np.sqrt(np.mean((pred_effect - true_effect) ** 2)))
                row["true_effect_rms_6h"] = float(np.sqrt(np.mean(true_effect ** 2)))
                # The same against the truth as the sensor could show it (clamped to its range),
                # and the error no forecaster inside that range can avoid (the floor).
                lo, hi = SENSOR_RANGE_MG_DL
                seen_effect = np.clip(a.truth[:, k], lo, hi) - np.clip(factual.truth[:, k], lo, hi)
                row["effect_rmse_6h_sensor"] = float(np.sqrt(np.mean((pred_effect - seen_effect) ** 2)))
                row["true_effect_rms_6h_sensor"] = float(np.sqrt(np.mean(seen_effect ** 2)))
                row["effect_floor_6h"] = float(np.sqrt(np.mean((seen_effect - true_effect) ** 2)))
            row["tir_abs_error_pp"] = float(100 * np.mean(np.abs(time_in_range(pred) - time_in_range(a.truth))))
            zones = clarke_zones(a.truth.reshape(-1), pred.reshape(-1))
            row["clarke_ab_pct"] = float(100 * np.isin(zones, ["A", "B"]).mean())
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    cols = ["arm", "forecaster", "rmse_0.5h", "rmse_2h", "rmse_6h", "effect_rmse_6h", "true_effect_rms_6h", "tir_abs_error_pp", "clarke_ab_pct"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    fmt = lambda v: f"{v:.1f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    return head + "".join("| " + " | ".join(fmt(r.get(c)) for c in cols) + " |\n" for r in rows)


def summary_markdown(rows: list[dict]) -> str:
    """Per arm and forecaster: effect RMSE at 6 h and its ratio to the plan-blind error (the
    true effect's RMS), the same against the truth clamped to the sensor's range, the floor of
    a forecaster inside that range (as a ratio to the plan-blind error), and RMSE at 2 h and
    its ratio to LOCF's."""
    locf_2h = {r["arm"]: r["rmse_2h"] for r in rows if r["forecaster"] == "locf"}
    head = ("| arm | forecaster | effect RMSE 6 h | / plan-blind | in sensor range | / plan-blind | floor / plan-blind "
            "| RMSE 2 h | / LOCF |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        cells = []
        for eff_key, blind_key in (("effect_rmse_6h", "true_effect_rms_6h"), ("effect_rmse_6h_sensor", "true_effect_rms_6h_sensor")):
            eff, blind = r.get(eff_key), r.get(blind_key)
            cells += ["" if eff is None else f"{eff:.1f}", "" if eff is None or not blind else f"{eff / blind:.2f}"]
        floor, blind = r.get("effect_floor_6h"), r.get("true_effect_rms_6h")
        cells.append("" if floor is None or not blind else f"{floor / blind:.2f}")
        lines.append(f"| {r['arm']} | {r['forecaster']} | " + " | ".join(cells) + f" | {r['rmse_2h']:.1f} | "
                     f"{r['rmse_2h'] / locf_2h[r['arm']]:.2f} |\n")
    return head + "".join(lines)


def effect_time_course(arms: list[ArmForecasts], forecaster: str = "twin", hours=(1, 2, 3, 4, 5, 6)) -> str:
    """Per arm and hour after the branch: the true effect's mean and RMS, the forecaster's mean
    effect, its effect RMSE, the correlation across subjects and the slope of the predicted on
    the true effect (least squares through 0): whether a what-if is too small, too early or
    too late, rather than one number at 6 h."""
    factual = next(a for a in arms if a.arm == "factual")
    lines = ["| arm | hour | true mean | true RMS | predicted mean | effect RMSE | correlation | slope |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for a in arms:
        if a.arm == "factual":
            continue
        for h in hours:
            k = int(round(h / STEP_H)) - 1
            t = a.truth[:, k] - factual.truth[:, k]
            e = a.forecasts[forecaster][:, k] - factual.forecasts[forecaster][:, k]
            corr = float(np.corrcoef(e, t)[0, 1]) if e.std() > 0 and t.std() > 0 else float("nan")
            slope = float((e * t).sum() / max((t * t).sum(), 1e-12))
            lines.append(f"| {a.arm} | {h:g} | {t.mean():.1f} | {np.sqrt((t ** 2).mean()):.1f} | {e.mean():.1f} | "
                         f"{np.sqrt(((e - t) ** 2).mean()):.1f} | {corr:.2f} | {slope:.2f} |")
    return "\n".join(lines) + "\n"

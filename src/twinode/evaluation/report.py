"""eval.md: every protocol's table with each forecaster's ratio to LOCF on the same targets,
the per-variable forecast table, interval coverage per horizon bucket, and mortality."""

from __future__ import annotations

from twinode.evaluation.scoring import NEGLIGIBLE_MSE

ORDER = ("twin", "locf", "history_mean", "population_mean", "decay_to_mean", "linear_interpolation")
TITLES = {
    "forecast": "Forecast (history up to the cut, every observation of the horizon after it)",
    "imputation": "Imputation (half of the window's time points held out, the other half as history)",
    "interpolation": "Interpolation (the whole window as history, its own points as targets: reconstruction)",
}


def _ratio(v: float, ref: float) -> str:
    return f"{v / ref:.3f}" if ref > NEGLIGIBLE_MSE else "-"


def protocol_table(name: str, res: dict) -> list[str]:
    loc = res["locf"]
    lines = [f"#### {TITLES.get(name, name)}", "",
             "| forecaster | MSE min-max, per variable (x1e-3) | / LOCF | MSE min-max, pooled (x1e-3) | / LOCF "
             "| MSE (norm.) | NLL | 90 % coverage |",
             "|---|---|---|---|---|---|---|---|"]
    for k in ORDER:
        if k not in res:
            continue
        r = res[k]
        nll = f"{r['nll']:.3f}" if "nll" in r else "-"
        cov = f"{r['coverage90']:.3f}" if "coverage90" in r else "-"
        lines.append(f"| {k} | {1e3 * r['mse_minmax_per_variable']:.3f} | "
                     f"{_ratio(r['mse_minmax_per_variable'], loc['mse_minmax_per_variable'])} | "
                     f"{1e3 * r['mse_minmax_pooled']:.3f} | {_ratio(r['mse_minmax_pooled'], loc['mse_minmax_pooled'])} | "
                     f"{r['mse_norm']:.4f} | {nll} | {cov} |")
    lines.append(f"\n{int(loc['n_targets'])} observed targets, the same for every forecaster.")
    cis = res.get("twin", {}).get("ratio_ci95") or {}
    spans = [f"to {ref}: per variable {c['per_variable_ci95'][0]:.3f}-{c['per_variable_ci95'][1]:.3f}, "
             f"pooled {c['pooled_ci95'][0]:.3f}-{c['pooled_ci95'][1]:.3f}" for ref, c in cis.items() if c]
    if spans:
        lines.append("Twin's ratio, 95 % interval over resampled subjects: " + "; ".join(spans) + ".")
    return lines


def per_variable_table(res: dict, units: dict) -> list[str]:
    cols = [k for k in ORDER if k in res]
    lines = ["", "Per variable, MSE on the min-max scale (x1e-3), forecast protocol:", "",
             "| variable | unit | targets | stays | " + " | ".join(cols) + " | twin / LOCF | largest stay's share of the twin's error |",
             "|---|---|---|---|" + "---|" * (len(cols) + 2)]
    for name, unit in units.items():
        per = {k: res[k]["per_variable"][name] for k in cols}
        n = int(per["twin"]["n"])
        if n == 0:
            continue
        cells = [f"{1e3 * per[k]['mse_minmax']:.3f}" for k in cols]
        twin = per["twin"]
        share = f"{twin['top_stay_share']:.2f}" if "top_stay_share" in twin else "-"
        lines.append(f"| {name} | {unit} | {n} | {twin.get('stays', '-')} | " + " | ".join(cells) + f" | "
                     f"{_ratio(twin['mse_minmax'], per['locf']['mse_minmax'])} | {share} |")
    return lines


def markdown(results: dict) -> str:
    m = results["meta"]
    lines = [f"### {m['dataset']}: {m['held_out_subjects']} held-out subjects", "",
             f"Twin: `{m['source']}`. Min-max scale: each channel's range over the train and tuning splits' "
             "raw values; predictions clipped to it.", ""]
    for name, res in results["protocols"].items():
        lines += protocol_table(name, res) + [""]
    if "forecast" in results["protocols"]:
        fc = results["protocols"]["forecast"]
        lines += per_variable_table(fc, results["units"])
        buckets = fc["twin"].get("coverage90_by_bucket")
        if buckets:
            lines += ["", "Twin's 90 % interval coverage by time since the last history point (forecast):", "",
                      "| horizon | coverage | targets |", "|---|---|---|"]
            lines += [f"| {b} | {v['coverage']:.3f} | {int(v['n'])} |" for b, v in buckets.items()]
    if results["risk"]:
        lines += ["", "Mortality from the whole window:", "",
                  "| model | AUROC (95 % CI) | AUPRC (95 % CI) | subjects | positives |", "|---|---|---|---|---|"]
        for name, r in results["risk"].items():
            if "auroc" in r:
                ci = lambda k: f" ({r[k][0]:.3f}-{r[k][1]:.3f})" if k in r else ""
                lines.append(f"| {name} | {r['auroc']:.3f}{ci('auroc_ci95')} | {r['auprc']:.3f}{ci('auprc_ci95')} | "
                             f"{r['n']} | {r['positives']} |")
            else:
                lines.append(f"| {name} | - (one class only) | - | {r['n']} | {r['positives']} |")
    return "\n".join(lines) + "\n"

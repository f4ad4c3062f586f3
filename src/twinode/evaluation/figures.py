"""twinode-eval's figure (``--plot``), drawn from the results dict that eval.json holds.

* One horizontal bar panel per protocol scored except ``interpolation`` (a reconstruction,
  where every anchored forecaster is exact): each variable's MSE on the min-max scale divided
  by LOCF's on that variable, for the twin and the strongest baselines (decay to mean, linear
  interpolation where it differs from LOCF, the subject's history mean), on a log axis with
  LOCF at 1; variables sorted by the twin's ratio, each with its number of targets. Variables
  where LOCF's MSE is 0 (no targets, or a constant channel) have no ratio and are left out.
  The title gives the twin's per-variable and pooled ratios to LOCF (eval.md's ``/ LOCF``).
* When the forecast results hold the twin's 90 % coverage by time since the last history
  point (the table eval.md prints), a panel of that coverage per bucket, 0.85-0.95 shaded.

PNG (or PDF/SVG/JPEG by the file's suffix) via matplotlib's Agg backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

SKIPPED = ("interpolation",)
# The twin and the baselines that come closest to it; LOCF is the reference line at 1.
FORECASTERS = ("twin", "decay_to_mean", "linear_interpolation", "history_mean")
COLOURS = {"twin": "tab:blue", "decay_to_mean": "tab:orange", "linear_interpolation": "tab:green",
           "history_mean": "tab:gray"}
COVERAGE_BAND = (0.85, 0.95)


@dataclass
class Ratios:
    """One protocol's panel: ``variables`` sorted by the twin's ratio, their target counts, the
    stays holding them (None where the results predate that count), and each drawn forecaster's
    per-variable MSE / LOCF's, in that order."""

    variables: list[str]
    n: list[int]
    ratios: dict[str, list[float]]
    stays: list[int | None] | None = None

    def labels(self) -> list[str]:
        stays = self.stays or [None] * len(self.variables)
        return [f"{v} (n={n})" if s is None else f"{v} (n={n}, {s} stays)"
                for v, n, s in zip(self.variables, self.n, stays)]


def ratio_rows(res: dict) -> Ratios:
    """The ratios one protocol's panel draws, from ``results["protocols"][proto]``."""
    locf = res["locf"]["per_variable"]
    kept = [v for v, r in locf.items() if r["mse_minmax"] > 0]
    drawn = [k for k in FORECASTERS if k in res]
    ratios = {k: {v: res[k]["per_variable"][v]["mse_minmax"] / locf[v]["mse_minmax"] for v in kept} for k in drawn}
    if "linear_interpolation" in ratios and all(math.isclose(r, 1.0, rel_tol=1e-9)
                                                for r in ratios["linear_interpolation"].values()):
        del ratios["linear_interpolation"]  # after the last history point it is LOCF (the forecast protocol)
    order = sorted(kept, key=lambda v: ratios["twin"][v]) if "twin" in ratios else kept
    stays = [res["twin"]["per_variable"][v].get("stays") if "twin" in res else None for v in order]
    return Ratios(order, [int(locf[v]["n"]) for v in order], {k: [r[v] for v in order] for k, r in ratios.items()},
                  stays)


def _fraction(num: float, den: float) -> str:
    return f"{num / den:.3f}" if den > 0 else "-"


def _ratio_panel(ax, proto: str, res: dict, rows: Ratios) -> None:
    twin, locf = res.get("twin", {}), res["locf"]
    title = f"{proto}: MSE (min-max) / LOCF's, per variable"
    if twin:
        title += (f"\ntwin / LOCF: {_fraction(twin['mse_minmax_per_variable'], locf['mse_minmax_per_variable'])} "
                  f"per variable, {_fraction(twin['mse_minmax_pooled'], locf['mse_minmax_pooled'])} pooled")
    ax.set_title(title, fontsize="medium")
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=1.0, label="LOCF")
    if not rows.variables:
        ax.text(0.5, 0.5, "no variable with LOCF MSE > 0", transform=ax.transAxes, ha="center", va="center",
                color="gray")
        ax.set_yticks([])
        return
    k = len(rows.ratios)
    height = 0.8 / max(k, 1)
    for j, (name, ratios) in enumerate(rows.ratios.items()):
        y = [i - 0.4 + height * (j + 0.5) for i in range(len(rows.variables))]
        # Bars from LOCF's 1 to the ratio: left of the line beats LOCF, right of it loses.
        ax.barh(y, [r - 1.0 for r in ratios], left=1.0, height=height, color=COLOURS.get(name), label=name)
    ax.set_yticks(range(len(rows.variables)), rows.labels())
    ax.set_ylim(len(rows.variables) - 0.5, -0.5)  # the twin's best variable on top
    values = [r for ratios in rows.ratios.values() for r in ratios if r > 0] + [1.0]
    lo, hi = min(values) / 1.25, max(values) * 1.25
    ax.set_xlim(lo, hi)
    ax.set_xticks(_log_ticks(lo, hi), [f"{t:g}" for t in _log_ticks(lo, hi)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("MSE / LOCF's MSE (log scale; < 1 beats LOCF)")
    ax.grid(axis="x", which="major", color="0.9", lw=0.6)
    ax.set_axisbelow(True)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Round ratios (1, 2, 5 per decade; finer on a narrow axis) between ``lo`` and ``hi``."""
    for steps in ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)):
        ticks = [round(b * 10.0 ** e, 6) for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for b in steps]
        ticks = [t for t in ticks if lo <= t <= hi]
        if len(ticks) >= 3:
            break
    return ticks


def coverage_buckets(results: dict) -> dict[str, dict]:
    """The twin's 90 % coverage per bucket of time since the last history point, on the forecast
    protocol (eval.md's table); empty when the results do not hold it."""
    return results["protocols"].get("forecast", {}).get("twin", {}).get("coverage90_by_bucket") or {}


def _coverage_panel(ax, buckets: dict[str, dict]) -> None:
    labels = list(buckets)
    cov = [float(b["coverage"]) for b in buckets.values()]
    x = list(range(len(labels)))
    ax.axhspan(*COVERAGE_BAND, color="tab:green", alpha=0.15, label=f"{COVERAGE_BAND[0]:g}-{COVERAGE_BAND[1]:g}")
    ax.axhline(0.9, color="tab:green", lw=0.8, ls="--")
    ax.plot(x, cov, marker="o", color="tab:blue", label="twin")
    ax.set_xticks(x, [f"{b}\nn={int(v['n'])}" for b, v in buckets.items()], fontsize="small")
    ax.set_ylim(min([0.5, *(c - 0.05 for c in cov)]), 1.02)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xlabel("time since the last history point (forecast)")
    ax.set_ylabel("90 % interval coverage")
    ax.set_title("twin's 90 % interval coverage by horizon", fontsize="medium")
    ax.legend(loc="lower left", fontsize="small")


def _legend(fig, axes: list) -> None:
    """One legend for the bar panels (each forecaster once, LOCF's line too), above them."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    rank = {name: i for i, name in enumerate(("LOCF", *FORECASTERS))}
    order = sorted(seen, key=lambda k: rank.get(k, len(rank)))
    if order:
        fig.legend([seen[k] for k in order], order, loc="outside upper center", ncol=len(seen), fontsize="small",
                   frameon=False)


def draw_eval(results: dict):
    """The figure and its axes by name: each bar panel under its protocol's name, the coverage
    panel under ``"coverage"`` (when the results hold it)."""
    protos = [p for p in results["protocols"] if p not in SKIPPED]
    buckets = coverage_buckets(results)
    if not protos and not buckets:
        raise ValueError("nothing to draw: the results score no protocol but interpolation "
                         f"(got {list(results['protocols'])})")
    rows = {p: ratio_rows(results["protocols"][p]) for p in protos}
    n_vars = max([len(r.variables) for r in rows.values()] or [0])
    cols = max(len(protos), 1)
    bar_h = 1.8 + 0.35 * max(n_vars, 3)  # a group of up to four bars per variable
    heights = ([bar_h] if protos else []) + ([2.6] if buckets else [])
    fig = plt.figure(figsize=(6.0 * cols, sum(heights) + 0.8), layout="constrained")
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    axes = {p: fig.add_subplot(grid[0, j]) for j, p in enumerate(protos)}
    for p, ax in axes.items():
        _ratio_panel(ax, p, results["protocols"][p], rows[p])
    _legend(fig, list(axes.values()))
    if buckets:
        axes["coverage"] = fig.add_subplot(grid[len(heights) - 1, :])
        _coverage_panel(axes["coverage"], buckets)
    return fig, axes


def eval_figure(results: dict, path: str | Path) -> Path:
    """:func:`draw_eval` saved to ``path`` (its suffix picks the format)."""
    path = Path(path)
    fig, _ = draw_eval(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

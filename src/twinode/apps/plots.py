"""Figures a clinician reads: the history, the forecast band, candidate plans and alerts.

PNG via matplotlib's Agg backend; ``log_figure`` adds a file to an MLflow run when a
tracking URI and run id are given (``log_plot``: the same, said on stderr, for the commands'
``--plot``/``--run-id``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def monitor_figure(scored: list, names: list[str], units: dict[str, str] | None = None, threshold: float | None = None):
    """One column per channel in ``names`` (a grid of at most 3 columns): observed values, the
    one-step forecast band (mean ± 2 std) and alerts above, the z-scores below."""
    units = units or {}
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * rows})
    for k, name in enumerate(names):
        ax, az = axes[2 * (k // cols), k % cols], axes[2 * (k // cols) + 1, k % cols]
        az.sharex(ax)
        _monitor_panel(ax, az, [s for s in scored if s.name == name], name, units.get(name, ""), threshold)
    for k in range(len(names), rows * cols):  # unused cells of the last grid row
        axes[2 * (k // cols), k % cols].set_visible(False)
        axes[2 * (k // cols) + 1, k % cols].set_visible(False)
    return fig


def _monitor_panel(ax, az, rows: list, name: str, unit: str, threshold: float | None) -> None:
    t = [s.time_h for s in rows]
    ax.set_title(name, fontsize="medium")
    ax.set_ylabel(f"{name} ({unit})" if unit else name)
    az.set_ylabel("z")
    az.set_xlabel("hours")
    if not rows:
        ax.text(0.5, 0.5, "no scored readings", transform=ax.transAxes, ha="center", va="center", color="gray")
        return
    lo = [s.mean - 2 * s.std for s in rows]
    hi = [s.mean + 2 * s.std for s in rows]
    ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.2, label="forecast ±2 sd")
    ax.plot(t, [s.mean for s in rows], color="tab:blue", lw=1, label="forecast mean")
    ax.scatter(t, [s.value for s in rows], s=6, color="black", label="observed")
    al = [s for s in rows if s.alert]
    ax.scatter([s.time_h for s in al], [s.value for s in al], s=30, marker="x", color="red", label="alert")
    ax.legend(loc="best", fontsize="small")
    az.plot(t, [s.z for s in rows], color="gray", lw=1)
    if threshold is not None:
        for y in (threshold, -threshold):
            az.axhline(y, color="red", ls="--", lw=0.8)


def plot_monitor(path: str | Path, scored: list, name: str | list[str], unit: str | dict[str, str] = "",
                 threshold: float | None = None) -> Path:
    """The :func:`monitor_figure` of one channel (``name``) or several (a list), saved to ``path``."""
    names = [name] if isinstance(name, str) else list(name)
    units = unit if isinstance(unit, dict) else {names[0]: unit}
    return _save(monitor_figure(scored, names, units, threshold), path)


def forecast_figure(frame, history, meta: dict, plans: list | None = None):
    """One panel per measurement: the history as points, each plan's mean and 5-95% band, and a
    vertical marker with the intervention's name at every dose: solid for doses in the history,
    dotted in the plan's colour for planned ones. ``frame``: twinode-predict's long table
    (plan, time_h, name, mean, q05, q95); ``plans``: objects with ``label`` and ``doses`` [M, 4]."""
    import polars as pl

    names = [m["name"] for m in meta["measurements"]]
    inter = [f["name"] for f in meta.get("interventions", [])]
    labels = frame["plan"].unique(maintain_order=True).to_list()
    planned = {p.label: p.doses for p in (plans or [])}
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.4 * len(names) + 0.4), sharex=True, squeeze=False)
    colours = {}
    for d, (ax, name) in enumerate(zip(axes[:, 0], names)):
        seen = history.mask[:, d] > 0
        ax.scatter(history.times[seen].numpy(), history.values[seen, d].numpy(), s=10, color="black", label="history")
        for plan in labels:
            part = frame.filter((pl.col("plan") == plan) & (pl.col("name") == name))
            line, = ax.plot(part["time_h"], part["mean"], label=plan)
            colours[plan] = line.get_color()
            ax.fill_between(part["time_h"], part["q05"], part["q95"], color=line.get_color(), alpha=0.15)
        ax.set_ylabel(f"{name} ({meta['measurements'][d].get('unit', '')})")
    top = axes[0, 0]
    for row in history.doses.tolist():
        _dose_marker(axes[:, 0], top, row, inter, "dimgray", "-", "")
    for plan in labels:
        doses = planned.get(plan)
        for row in ([] if doses is None else doses.tolist()):
            _dose_marker(axes[:, 0], top, row, inter, colours.get(plan, "tab:red"), ":", f" ({plan})")
    axes[-1, 0].set_xlabel("hours")
    top.legend(loc="best", fontsize="small")
    return fig


def _dose_marker(axes, top, row, inter: list[str], colour: str, style: str, suffix: str) -> None:
    t, channel, amount, duration = float(row[0]), int(row[1]), float(row[2]), float(row[3])
    name = inter[channel] if 0 <= channel < len(inter) else f"dose {channel}"
    for ax in axes:
        ax.axvline(t, color=colour, lw=0.8, ls=style, alpha=0.8)
        if duration > 0:  # an infusion: its span, faintly
            ax.axvspan(t, t + duration, color=colour, alpha=0.04)
    top.text(t, 1.0, f"{name} {amount:g}{suffix}", transform=top.get_xaxis_transform(), rotation=90, va="bottom",
             ha="center", fontsize="x-small", color=colour, clip_on=False)


def plot_forecast(path: str | Path, frame, history, meta: dict, plans: list | None = None) -> Path:
    """:func:`forecast_figure` saved to ``path``."""
    return _save(forecast_figure(frame, history, meta, plans), path)


def plot_plans(path: str | Path, history_t, history_x, ranked: list, name: str, unit: str = "",
               band: tuple[float, float] | None = (70.0, 180.0)) -> Path:
    """History as points, each candidate plan's mean and 5-95% band, the target range shaded."""
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter(history_t, history_x, s=6, color="black", label="history")
    if band is not None:
        ax.axhspan(band[0], band[1], color="green", alpha=0.06, label=f"target {band[0]:g}-{band[1]:g}")
    for s in ranked:
        q = s.query.numpy()
        line, = ax.plot(q, s.mean.numpy(), label=f"{s.label} ({s.score:.2f})")
        ax.fill_between(q, s.q05.numpy(), s.q95.numpy(), color=line.get_color(), alpha=0.12)
        for row in s.doses.tolist():
            ax.axvline(row[0], color=line.get_color(), lw=0.6, ls=":")
    ax.set_ylabel(f"{name} ({unit})" if unit else name)
    ax.set_xlabel("hours")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_reliability(path: str | Path, curves: dict[str, list[dict]]) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=0.8)
    for label, rows in curves.items():
        ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label=label)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def log_figure(path: str | Path, tracking_uri: str | None, run_id: str | None, artifact_path: str = "plots") -> bool:
    """Log a PNG into an existing MLflow run; False when no run is given."""
    if not run_id:
        return False
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri).log_artifact(run_id, str(path), artifact_path)
    return True


def log_plot(path: str | Path, tracking_uri: str | None, run_id: str | None) -> None:
    """A command's ``--plot`` into its ``--run-id``'s MLflow run (nothing when no run is given),
    said on stderr."""
    if log_figure(path, tracking_uri, run_id):
        print(f"logged {path} to MLflow run {run_id}", file=sys.stderr)

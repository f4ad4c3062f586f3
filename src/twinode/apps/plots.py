"""Figures a clinician reads: the history, the forecast band, candidate plans and alerts.

PNG via matplotlib's Agg backend; ``log_figure`` adds a file to an MLflow run when a
tracking URI and run id are given.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_monitor(path: str | Path, scored: list, name: str, unit: str = "", threshold: float | None = None) -> Path:
    """Observed values, the one-step forecast band (mean ± 2 std) and alerts; z-scores below."""
    rows = [s for s in scored if s.name == name]
    t = [s.time_h for s in rows]
    fig, (ax, az) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lo = [s.mean - 2 * s.std for s in rows]
    hi = [s.mean + 2 * s.std for s in rows]
    ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.2, label="forecast ±2 sd")
    ax.plot(t, [s.mean for s in rows], color="tab:blue", lw=1, label="forecast mean")
    ax.scatter(t, [s.value for s in rows], s=6, color="black", label="observed")
    al = [s for s in rows if s.alert]
    ax.scatter([s.time_h for s in al], [s.value for s in al], s=30, marker="x", color="red", label="alert")
    ax.set_ylabel(f"{name} ({unit})" if unit else name)
    ax.legend(loc="best", fontsize="small")
    az.plot(t, [s.z for s in rows], color="gray", lw=1)
    if threshold is not None:
        for y in (threshold, -threshold):
            az.axhline(y, color="red", ls="--", lw=0.8)
    az.set_ylabel("z")
    az.set_xlabel("hours")
    return _save(fig, path)


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

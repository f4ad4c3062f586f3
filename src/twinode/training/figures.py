"""The figure a training run ends with: the twin's forecast for a few validation subjects,
history points, held-out targets and the 90 % band, in normalised units (one panel per
subject and channel). Logged to MLflow as ``forecast.png``."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from twinode.data.collate import Batch  # noqa: E402


def forecast_figure(twin, batch: Batch, names: list[str], path: str | Path, n_subjects: int = 3,
                    n_channels: int = 4, points: int = 200) -> Path:
    """Draw the twin's forecast for the first ``n_subjects`` of ``batch`` on the channels they
    observe most, and save it to ``path`` (PNG)."""
    b = batch
    k = min(n_subjects, len(b))
    hist = (b.hist_t[:k], b.hist_x[:k], b.hist_m[:k], b.hist_len[:k])
    end = float(torch.cat([b.hist_t[:k], b.tgt_t[:k]], 1).max())
    grid = torch.linspace(0.0, max(end, 1e-3), points).expand(k, points).contiguous()
    with torch.no_grad():
        s_emb = twin.embed_static(b.static[:k], b.static_m[:k])
        z, _ = twin.encode(*hist, s_emb, b.doses[:k])
        mean, log_std = twin.decode_at(z, b.anchor[:k], grid, b.doses[:k], s_emb, *hist)
    seen = (b.hist_m[:k].sum((0, 1)) + b.tgt_m[:k].sum((0, 1)))
    channels = [int(c) for c in torch.argsort(seen, descending=True)[:n_channels] if seen[c] > 0] or [0]
    fig, axes = plt.subplots(k, len(channels), figsize=(3.2 * len(channels), 2.4 * k), squeeze=False)
    for i in range(k):
        n = int(b.hist_len[i])
        for j, c in enumerate(channels):
            ax = axes[i][j]
            sd = torch.exp(log_std[i, :, c])
            ax.fill_between(grid[i], mean[i, :, c] - 1.645 * sd, mean[i, :, c] + 1.645 * sd, alpha=0.2,
                            color="tab:blue", label="twin 90 %")
            ax.plot(grid[i], mean[i, :, c], color="tab:blue", lw=1, label="twin mean")
            hm = b.hist_m[i, :n, c] > 0
            ax.scatter(b.hist_t[i, :n][hm], b.hist_x[i, :n, c][hm], s=8, color="black", label="history")
            tm = b.tgt_m[i, :, c] > 0
            ax.scatter(b.tgt_t[i][tm], b.tgt_x[i, :, c][tm], s=12, marker="x", color="tab:red", label="held out")
            ax.axvline(float(b.anchor[i]), color="grey", lw=0.5, ls="--")
            if i == 0:
                ax.set_title(names[c] if c < len(names) else f"channel {c}", fontsize="small")
            if j == 0:
                ax.set_ylabel(f"subject {int(b.subject_id[i])}\n(normalised)", fontsize="small")
    axes[0][0].legend(fontsize="x-small", loc="best")
    axes[-1][0].set_xlabel("hours")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""How much a boosted model on top of a twin still finds: a residual probe.

For every target of a protocol (forecast or imputation) the twin's prediction, its spread and
simple features of the history around the query (each channel's value before and after it,
their ages, linear interpolation, the subject's mean; optionally the same for every other
channel) are collected on the train split; a gradient-boosted model learns the twin's residual
there on the min-max scale and is scored on the tuning split. Where it lowers the tuning error,
the history holds something the twin does not use; where it does not, the twin is at what
these features can say. The held-out split is never read.

    .venv/bin/python scripts/probe_headroom.py --checkpoint <run>/checkpoints/epochNNN.ckpt \\
        --data-dir data/physionet2012_meds --protocol imputation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def collect(twin, dm, records, protocol: str) -> dict[str, np.ndarray]:
    """One row per observed target: channel, truth and twin on the min-max scale, features."""
    from twinode.evaluation.baselines import Anchors, history_mean, linear_interpolation, locf
    from twinode.evaluation.protocols import PROTOCOLS, minmax_scale, protocol_loader

    scale = minmax_scale(dm)

    def mm(x):
        return scale(x, clip=True)

    rows: dict[str, list] = {k: [] for k in ("d", "y", "twin", "own", "cross")}
    with torch.no_grad():
        for b in protocol_loader(records, dm, PROTOCOLS[protocol], 128):
            hist = (b.hist_t, b.hist_x, b.hist_m, b.hist_len)
            s_emb = twin.embed_static(b.static, b.static_m)
            z, _ = twin.encode(*hist, s_emb, b.doses)
            mean, log_std = twin.decode_at(z, b.anchor, b.tgt_t, b.doses, s_emb, *hist)
            a = Anchors(*hist, b.tgt_t)
            when = (b.tgt_t - b.anchor.unsqueeze(1)).unsqueeze(-1).expand_as(mean)
            own = torch.stack([mm(mean), log_std, mm(a.prev), a.age.clamp(max=48), a.prev_ok, mm(a.next),
                               a.gap.clamp(max=48), a.next_ok, mm(linear_interpolation(a)), mm(history_mean(a)),
                               mm(locf(a)), when], -1)
            gone = torch.full_like(a.prev, -1.0)
            cross = torch.cat([torch.where(a.prev_ok > 0, mm(a.prev), gone), a.age.clamp(max=48),
                               torch.where(a.next_ok > 0, mm(a.next), gone), a.gap.clamp(max=48)], -1)
            bi, qi, di = (b.tgt_m > 0).nonzero(as_tuple=True)
            rows["d"].append(di.numpy())
            rows["y"].append(scale(b.tgt_x)[bi, qi, di].numpy())
            rows["twin"].append(mm(mean)[bi, qi, di].numpy())
            rows["own"].append(own[bi, qi, di].numpy())
            rows["cross"].append(cross[bi, qi].numpy())
    return {k: np.concatenate(v) for k, v in rows.items()}


def scores(r: dict, pred: np.ndarray, n_channels: int) -> tuple[float, float]:
    """Pooled and per-variable MSE (x1e-3) on the min-max scale."""
    se = (pred - r["y"]) ** 2
    per = [se[r["d"] == d].mean() for d in range(n_channels) if (r["d"] == d).any()]
    return float(se.mean()) * 1e3, float(np.mean(per)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--data-dir", default=None, help="the dataset root, if not where the run read it")
    ap.add_argument("--protocol", choices=["forecast", "imputation"], default="imputation")
    ap.add_argument("--cross", action="store_true", help="add every other channel's neighbours as features")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sklearn.ensemble import HistGradientBoostingRegressor

    from twinode.evaluation.setup import from_checkpoint

    dm, twin, _ = from_checkpoint(args.checkpoint, data_dir=args.data_dir)
    names = [f.name for f in dm.spec.measurements]
    train, tuning = (collect(twin, dm, dm.splits[s], args.protocol) for s in ("train", "tuning"))

    def features(r):
        parts = [r["d"][:, None].astype(float), r["own"]] + ([r["cross"]] if args.cross else [])
        return np.concatenate(parts, 1)

    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=31, l2_regularization=1.0,
                                          categorical_features=[0], early_stopping=True, random_state=0)
    model.fit(features(train), train["y"] - train["twin"])
    boosted = np.clip(tuning["twin"] + model.predict(features(tuning)), 0.0, 1.0)
    interp = tuning["own"][:, 8]
    print(f"{args.protocol}, tuning split, x1e-3 min-max (pooled, per variable); {len(tuning['y'])} targets")
    for label, pred in (("twin", tuning["twin"]), ("twin + boosted residual", boosted), ("LOCF", tuning["own"][:, 10]),
                        ("linear interpolation", interp)):
        pooled, per = scores(tuning, pred, len(names))
        print(f"  {label:26s} {pooled:8.3f} {per:8.3f}")
    gain = (tuning["twin"] - tuning["y"]) ** 2 - (boosted - tuning["y"]) ** 2
    print("channels where the boosted residual gains most (share of the pooled gain; twin -> boosted MSE):")
    for d in np.argsort([-gain[tuning["d"] == d].sum() for d in range(len(names))])[:8]:
        sel = tuning["d"] == d
        if sel.any():
            print(f"  {names[d]:12s} {gain[sel].sum() / max(gain.sum(), 1e-12):6.2f}  "
                  f"{((tuning['twin'][sel] - tuning['y'][sel]) ** 2).mean() * 1e3:8.3f} -> "
                  f"{((boosted[sel] - tuning['y'][sel]) ** 2).mean() * 1e3:8.3f}")


if __name__ == "__main__":
    main()

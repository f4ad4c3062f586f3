"""Held-out protocols: a twin and every baseline scored on the same targets.

* ``forecast``: history up to ``window - horizon`` hours, every observation in the next
  ``horizon`` hours as targets (PhysioNet 2012 with a 24 h horizon: t-PatchGNN's first 24 h ->
  next 24 h);
* ``imputation``: a seeded half of the window's time points as history, the other half as
  targets;
* ``interpolation``: the whole window as history, the same points as targets
  (reconstruction, the Latent ODE paper's PhysioNet task). Mortality is scored here, from
  the whole window.

The held-out split is used (the tuning split when there is none); the decay-to-mean
baseline is fitted on the train split's forecast windows, and the logistic mortality
baseline on the train split's whole windows.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from twinode.data.collate import collate_windows
from twinode.data.windows import ForecastWindows
from twinode.evaluation.baselines import BASELINES, Anchors, DecayToMean
from twinode.evaluation.scoring import ForecastScore, ratio_intervals, risk_scores
from twinode.training.metrics import MinMaxScale

PROTOCOLS = {"forecast": "fixed", "imputation": "imputation", "interpolation": "interpolation"}
# Which half of each stay the imputation protocol holds out: fixed, so twins trained with
# different seeds are scored on the same targets (42 is the training default's seed).
PROTOCOL_SEED = 42


def minmax_scale(dm) -> MinMaxScale:
    """Each channel's range over the train and tuning splits' raw values."""
    return MinMaxScale.from_records(list(dm.splits["train"]) + list(dm.splits["tuning"]), dm.spec, dm.normaliser)


def protocol_loader(records, dm, mode: str, batch_size: int) -> DataLoader:
    """The protocol's windows of ``records`` (mode ``PROTOCOLS[name]``, the fixed protocol seed), batched."""
    windows = ForecastWindows(records, dm.horizon_h, dm.spec.window_hours, mode, seed=PROTOCOL_SEED)
    return DataLoader(windows, batch_size=batch_size, shuffle=False, collate_fn=collate_windows)


def _progress(iterable, desc: str, show: bool):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def evaluate_twin(twin, dm, protocols: tuple[str, ...] = tuple(PROTOCOLS), batch_size: int = 256,
                  progress: bool = False) -> dict:
    """Score ``twin`` (a PatientTwin, eager or scripted, e.g. ``torch.jit.load(twin.pt).twin``)
    next to every baseline on the held-out split of the set-up data module ``dm``."""
    from twinode.models.baselines import LogisticRisk, summary_features

    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
    names = [f.name for f in dm.spec.measurements]
    D = len(names)
    scale = minmax_scale(dm)
    held_out = dm.splits["held_out"] or dm.splits["tuning"]
    decay = DecayToMean.fit(_progress(dm.forecast_batches("train"), "fit decay-to-mean", progress), D)
    results: dict = {"protocols": {}, "risk": {}}
    labels, twin_p, feats = [], [], []
    with torch.no_grad():
        for proto in protocols:
            scores = {k: ForecastScore(D) for k in ("twin", *BASELINES, "decay_to_mean")}
            for b in _progress(protocol_loader(held_out, dm, PROTOCOLS[proto], batch_size), proto, progress):
                hist = (b.hist_t, b.hist_x, b.hist_m, b.hist_len)
                s_emb = twin.embed_static(b.static, b.static_m)
                z, _ = twin.encode(*hist, s_emb, b.doses)
                mean, log_std = twin.decode_at(z, b.anchor, b.tgt_t, b.doses, s_emb, *hist)
                dist = (b.tgt_t - b.anchor.unsqueeze(1)).clamp(min=0.0) if proto == "forecast" else None
                scores["twin"].update(mean, b.tgt_x, b.tgt_m, scale, log_std, dist)
                a = Anchors(*hist, b.tgt_t)
                for name, f in BASELINES.items():
                    scores[name].update(f(a), b.tgt_x, b.tgt_m, scale)
                scores["decay_to_mean"].update(decay(a), b.tgt_x, b.tgt_m, scale)
                if proto == "interpolation":
                    known = torch.isfinite(b.outcome)
                    labels.append(b.outcome[known])
                    feats.append(summary_features(b.hist_x, b.hist_m, b.static, b.static_m)[known])
                    if twin.has_risk:
                        twin_p.append(torch.sigmoid(twin.risk_logit(z, s_emb, *hist))[known])
            results["protocols"][proto] = {k: v.result(names) for k, v in scores.items()}
            # How far the twin's ratios to the floors could move with another draw of subjects.
            results["protocols"][proto]["twin"]["ratio_ci95"] = {
                ref: ratio_intervals(scores["twin"], scores[ref]) for ref in ("locf", "decay_to_mean")}
    if labels:
        y = torch.cat(labels)
        if twin_p:
            results["risk"]["twin"] = risk_scores(y, torch.cat(twin_p))
        whole = ForecastWindows(dm.splits["train"], dm.horizon_h, dm.spec.window_hours, "interpolation")
        train_b = collate_windows([whole[i] for i in range(len(whole))])
        known = torch.isfinite(train_b.outcome)
        if bool(known.any()) and y.numel():
            model = LogisticRisk().fit(summary_features(train_b.hist_x, train_b.hist_m, train_b.static,
                                                        train_b.static_m)[known], train_b.outcome[known])
            results["risk"]["logistic_summary"] = risk_scores(y, model.predict_proba(torch.cat(feats)))
    results["decay_to_mean_fit"] = {n: {"w": float(decay.w[i]), "half_life_h": float(np.log(2) / float(decay.k[i]))}
                                    for i, n in enumerate(names)}
    results["units"] = {f.name: f.unit for f in dm.spec.measurements}
    return results

"""LightningModule that trains a PatientTwin. The twin stays plain torch; this adds the
objective, metrics, optimiser and logging around it."""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision

from twinode.data.collate import Batch
from twinode.errors import SolverError
from twinode.models.decoders import gaussian_nll
from twinode.models.twin import PatientTwin
from twinode.training.losses import beta_nll, kl_standard_normal, kl_weight
from twinode.models.baselines import locf_forecast
from twinode.training.metrics import MinMaxScale, masked_abs_error, masked_sq_error


def channel_balance(records, power: float) -> torch.Tensor:
    """Per-channel weights ``[D]`` ~ ``(mean count / count)^power`` over ``records``' observed
    values, scaled so the average weight of an observed value is 1 (the loss keeps its size)."""
    cnt = torch.from_numpy(sum(r.mask.sum(0) for r in records)).double().clamp(min=1.0)
    w = (cnt.mean() / cnt).pow(power)
    return (w * cnt.sum() / (w * cnt).sum()).float()


def minmax_channel_weights(records, spec, normaliser, floor: float = 0.1) -> torch.Tensor:
    """Per-channel weights ``[D]``: how much a unit of error on the training scale (z-scores,
    after log1p where the FeatureSpec says so) counts once each channel is min-max scaled over
    ``records`` in original units, as the PhysioNet protocol scores it (the variance of the
    min-max scaled values over that of the normalised ones). Scaled so the average weight of an
    observed value is 1, and floored at ``floor`` so a channel that barely moves is still learned."""
    import numpy as np

    scale = MinMaxScale.from_records(records, spec, normaliser)
    values = torch.from_numpy(np.concatenate([r.values for r in records])).double()
    mask = torch.from_numpy(np.concatenate([r.mask for r in records])).double()
    cnt = mask.sum(0).clamp(min=1.0)

    def var(x: torch.Tensor) -> torch.Tensor:
        mean = (x * mask).sum(0) / cnt
        return ((x - mean).pow(2) * mask).sum(0) / cnt

    ratio = var(scale(values)) / var(values).clamp(min=1e-12)
    w = ratio * cnt.sum() / (ratio * cnt).sum().clamp(min=1e-12)
    return w.clamp(min=floor).float()


class TwinLitModule(L.LightningModule):
    def __init__(self, twin: PatientTwin, lr: float = 3e-3, weight_decay: float = 1e-5, kl_target: float = 1.0,
                 kl_anneal_epochs: int = 10, recon_weight: float = 1.0, lr_min_factor: float = 0.1, risk_weight: float = 0.1,
                 mse_weight: float = 0.0, prior_weight: float = 0.0, channel_prior: str = "fixed",
                 mse_balance: float = 0.0, nll_beta: float = 0.0, channel_weights: str | None = None,
                 metadata: dict | None = None):
        super().__init__()
        self.twin = twin
        self.lr, self.weight_decay, self.lr_min_factor = lr, weight_decay, lr_min_factor
        self.kl_target, self.kl_anneal_epochs, self.recon_weight = kl_target, kl_anneal_epochs, recon_weight
        # Everything needed to rebuild and export the twin from a checkpoint alone.
        self.metadata = metadata or {}
        self.val_mae, self.val_mae_locf, self.val_nll = MeanMetric(), MeanMetric(), MeanMetric()
        self.val_mse, self.val_mse_all = MeanMetric(), MeanMetric()
        self.risk_weight = risk_weight
        # Squared error of the mean beside the likelihood: the likelihood alone lets a channel it
        # finds hard buy its error off with a wide spread.
        self.mse_weight = mse_weight
        # Anchored twin: pull each channel's own decoder parameters toward the prior
        # (AnchoredDecoder.prior_penalty), so channels with few targets do not overfit them.
        self.prior_weight = prior_weight
        # "fitted": an anchored twin starts from each channel's decay to its level fitted on the
        # train split (twinode.models.channel_prior); "fixed": one rate for every channel.
        if channel_prior not in ("fixed", "fitted"):
            raise ValueError(f"channel_prior must be 'fixed' or 'fitted', not {channel_prior!r}")
        self.channel_prior = channel_prior
        # Weight of each channel's squared error ~ (mean count / its count)^mse_balance over the
        # train split (0: every target alike, so frequent vitals dominate; 1: every channel
        # alike, as the per-variable MSE averages them). Set in setup().
        self.mse_balance = mse_balance
        # beta-NLL on the targets (training.losses.beta_nll; 0: the plain likelihood).
        if not 0.0 <= nll_beta <= 1.0:
            raise ValueError(f"nll_beta must be within [0, 1], got {nll_beta}")
        self.nll_beta = nll_beta
        self._mse_channel_w: torch.Tensor | None = None
        # "minmax": each channel's likelihood and squared error weighted by what its errors count
        # on the min-max scale the PhysioNet protocol reports (minmax_channel_weights); None: alike.
        if channel_weights not in (None, "minmax"):
            raise ValueError(f"channel_weights must be null or 'minmax', not {channel_weights!r}")
        self.channel_weights = channel_weights
        self._loss_channel_w: torch.Tensor | None = None
        self.val_auroc, self.val_auprc = BinaryAUROC(), BinaryAveragePrecision()
        self._risk_seen, self._risk_positives = False, 0.0  # this validation epoch's risk targets

    def setup(self, stage: str) -> None:
        # Runs before a checkpoint is restored, so a resumed run keeps the prior it started from.
        dm = self.trainer.datamodule if self._trainer is not None else None
        if stage != "fit" or dm is None:
            return
        if self.mse_balance > 0:
            self._mse_channel_w = channel_balance(dm.splits["train"], self.mse_balance)
        if self.channel_weights == "minmax":
            self._loss_channel_w = minmax_channel_weights(dm.splits["train"], dm.spec, dm.normaliser)
            self.metadata["loss_channel_weights"] = self._loss_channel_w.tolist()
        if self.channel_prior != "fitted" or not self.twin.anchored:
            return
        from twinode.models.channel_prior import fit_channel_decay

        w, k = fit_channel_decay(dm.forecast_batches("train"), self.twin.n_measurements)
        self.twin.decoder.set_channel_prior(w, k)
        self.metadata["channel_prior"] = {"w": w.tolist(), "half_life_h": (0.6931471805599453 / k).tolist()}

    def _objective(self, b: Batch, sample: bool) -> dict[str, torch.Tensor]:
        s_emb = self.twin.embed_static(b.static, b.static_m)
        z_mean, z_log_std = self.twin.encode(b.hist_t, b.hist_x, b.hist_m, b.hist_len, s_emb, b.doses)
        z = z_mean + torch.exp(z_log_std) * torch.randn_like(z_mean) if (sample and self.twin.variational) else z_mean
        hist = (b.hist_t, b.hist_x, b.hist_m, b.hist_len)
        # Reconstructing the history's own points teaches an anchored twin nothing (it sees them).
        recon = self.recon_weight > 0 and not self.twin.anchored
        tq = torch.cat([b.hist_t, b.tgt_t], dim=1) if recon else b.tgt_t
        mean, log_std = self.twin.decode_at(z, b.anchor, tq, b.doses, s_emb, *hist)
        n = b.hist_t.shape[1] if recon else 0
        # Training weighs channels as the configured scale does; validation keeps every target alike.
        cw = self._loss_channel_w.to(b.tgt_m) if (self._loss_channel_w is not None and self.training) else None
        tgt_w = b.tgt_m if cw is None else b.tgt_m * cw
        nll_f, cnt_f = beta_nll(b.tgt_x, tgt_w, mean[:, n:], log_std[:, n:], self.nll_beta if self.training else 0.0)
        if recon:
            nll_r, cnt_r = gaussian_nll(b.hist_x, b.hist_m, mean[:, :n], log_std[:, :n])
        else:
            nll_r, cnt_r = torch.zeros((), device=z.device), torch.zeros((), device=z.device)
        kl = kl_standard_normal(z_mean, z_log_std).sum() if self.twin.variational else torch.zeros((), device=z.device)
        beta = kl_weight(self.current_epoch, self.kl_target, self.kl_anneal_epochs)
        rw = self.recon_weight if recon else 0.0
        denom = (cnt_f + rw * cnt_r).clamp(min=1.0)
        loss = (nll_f + rw * nll_r + beta * kl) / denom
        if self.mse_weight > 0:
            m = tgt_w if self._mse_channel_w is None else tgt_w * self._mse_channel_w.to(b.tgt_m)
            loss = loss + self.mse_weight * masked_sq_error(mean[:, n:], b.tgt_x, m)[0] / cnt_f.clamp(min=1.0)
        if self.prior_weight > 0 and self.twin.anchored:
            loss = loss + self.prior_weight * self.twin.decoder.prior_penalty()
        out = {"loss": loss, "nll_f": nll_f, "cnt_f": cnt_f, "kl": kl / len(b), "mean_f": mean[:, n:]}
        known = torch.isfinite(b.outcome)
        if self.twin.has_risk and bool(known.any()):
            logit = self.twin.risk_logit(z_mean, s_emb, *hist)[known]
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, b.outcome[known])
            out.update(loss=loss + self.risk_weight * bce, bce=bce, risk_logit=logit, risk_label=b.outcome[known])
        return out

    def _check_finite(self, loss: torch.Tensor, b: Batch, stage: str) -> None:
        if not torch.isfinite(loss):
            ids = b.subject_id.tolist()
            raise SolverError(
                f"non-finite {stage} loss at epoch {self.current_epoch} on subjects {ids[:20]}{'...' if len(ids) > 20 else ''}; "
                "try a smaller learning rate (model.lr), a fixed-step solver (solver=rk4) or gradient clipping "
                "(trainer.gradient_clip_val)"
            )

    def _guarded_objective(self, b: Batch, sample: bool) -> dict[str, torch.Tensor]:
        try:
            return self._objective(b, sample)
        except SolverError as exc:  # rows of the batch -> the subjects a user can look up
            rows = getattr(exc, "rows", None)
            if rows is None:
                raise
            ids = b.subject_id[torch.as_tensor(rows, dtype=torch.long)].tolist()
            raise SolverError(f"{exc} Subjects: {ids}.") from exc

    def training_step(self, b: Batch, batch_idx: int):
        try:
            out = self._guarded_objective(b, sample=True)
            self._check_finite(out["loss"], b, "training")
        except SolverError as exc:  # training.callbacks.NumericalGuard decides: raise, or skip the batch
            guard = getattr(self, "nonfinite_guard", None)
            if guard is None:
                raise
            return guard.handle_step_error(self, exc)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=len(b))
        self.log("train/kl", out["kl"], batch_size=len(b))
        if "bce" in out:
            self.log("train/risk_bce", out["bce"], batch_size=len(b))
        return out["loss"]

    def validation_step(self, b: Batch, batch_idx: int):
        out = self._guarded_objective(b, sample=False)
        self._check_finite(out["loss"], b, "validation")
        locf, seen = locf_forecast(b.hist_x, b.hist_m, b.tgt_t.shape[1])
        mask = b.tgt_m * seen
        err, cnt = masked_abs_error(out["mean_f"], b.tgt_x, mask)
        err_locf, _ = masked_abs_error(locf, b.tgt_x, mask)
        if cnt > 0:
            self.val_mae.update(err / cnt, weight=cnt)
            self.val_mae_locf.update(err_locf / cnt, weight=cnt)
        # MSE on every observed target (also channels LOCF cannot cover), normalised units.
        sq_all, cnt_all = masked_sq_error(out["mean_f"], b.tgt_x, b.tgt_m)
        if cnt_all > 0:
            self.val_mse_all.update(sq_all / cnt_all, weight=cnt_all)
        if cnt > 0:
            sq, _ = masked_sq_error(out["mean_f"], b.tgt_x, mask)
            self.val_mse.update(sq / cnt, weight=cnt)
        if out["cnt_f"] > 0:
            self.val_nll.update(out["nll_f"] / out["cnt_f"], weight=out["cnt_f"])
        self.log("val/loss", out["loss"], batch_size=len(b), sync_dist=True)
        if "risk_logit" in out:
            self.val_auroc.update(torch.sigmoid(out["risk_logit"]), out["risk_label"].long())
            self._risk_positives += float(out["risk_label"].sum())
            self.val_auprc.update(torch.sigmoid(out["risk_logit"]), out["risk_label"].long())
            self._risk_seen = True

    def on_validation_epoch_end(self) -> None:
        self.log("val/forecast_mae", self.val_mae.compute(), prog_bar=True, sync_dist=False)
        self.log("val/forecast_mae_locf", self.val_mae_locf.compute(), sync_dist=False)
        self.log("val/forecast_nll", self.val_nll.compute(), sync_dist=False)
        self.log("val/forecast_mse", self.val_mse.compute(), sync_dist=False)
        self.log("val/target_mse", self.val_mse_all.compute(), sync_dist=False)
        if self._risk_seen:
            self.log("val/risk_auroc", self.val_auroc.compute())
            self.log("val/risk_auprc", self.val_auprc.compute())
            # How many positives the AUROC stands on (exported: a consumer can judge the risk).
            self.log("val/risk_positives", self._risk_positives, sync_dist=True, reduce_fx="sum")
            self._risk_seen = False
            self._risk_positives = 0.0
        for m in (self.val_mae, self.val_mae_locf, self.val_nll, self.val_mse, self.val_mse_all, self.val_auroc, self.val_auprc):
            m.reset()

    def on_train_epoch_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "train_windows"):
            dm.train_windows.set_epoch(self.current_epoch)

    def configure_optimizers(self):
        """The config's ``model.optimizer`` and ``model.scheduler`` partials, which the training
        pipeline sets as ``optimizer_factory`` / ``scheduler_factory`` (a ``scheduler_factory``
        of None: a constant learning rate). Unset, as when the module is built by hand: AdamW(lr,
        weight_decay) and cosine annealing to ``lr * lr_min_factor`` over the trainer's epochs."""
        from twinode.training.optim import MONITOR, cosine_annealing

        make_opt = getattr(self, "optimizer_factory", None)
        opt = make_opt(self.parameters()) if make_opt is not None else \
            torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        make_sched = getattr(self, "scheduler_factory", cosine_annealing)
        if make_sched is None:
            return opt
        if make_sched is cosine_annealing:
            sched = cosine_annealing(opt, self.trainer.max_epochs if self._trainer else None, self.lr_min_factor)
        else:
            sched = make_sched(opt)
        scheduler = {"scheduler": sched, "interval": "epoch"}
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler["monitor"] = getattr(sched, "monitor", MONITOR)
        return {"optimizer": opt, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["twinode"] = self.metadata

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.metadata = checkpoint.get("twinode", self.metadata)

"""Numerical guards: a non-finite loss, non-finite gradients or a solver failure either stop
the run with an error naming the batch's subjects, or skip that batch's update and count it.

Skipping is DDP-safe: a rank with a bad batch still returns a (zero) loss, so every rank runs
backward and the gradient all-reduce; the skip decision is then agreed across ranks and all
of them drop the update together (gradients set to None, so the optimiser leaves every
parameter, its moments and its weight decay untouched).
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from twinode.errors import ConfigError, SolverError

log = logging.getLogger(__name__)

POLICIES = ("raise", "skip")


class NumericalGuard(L.Callback):
    """``on_nonfinite="raise"`` stops the run with :class:`SolverError`; ``"skip"`` drops the
    batch's optimiser step and logs the running count as ``train/skipped_batches``."""

    def __init__(self, on_nonfinite: str = "raise", max_listed: int = 20):
        if on_nonfinite not in POLICIES:
            raise ConfigError("guards.on_nonfinite", on_nonfinite, POLICIES)
        self.on_nonfinite, self.max_listed = on_nonfinite, max_listed
        self.skipped = 0
        self._subjects: list[int] = []
        self._bad_batch: str | None = None

    # TwinLitModule.training_step hands its SolverError (non-finite loss, solver failure) here.
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        setattr(pl_module, "nonfinite_guard", self)  # noqa: B010 (a plain attribute, not an nn.Module)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if getattr(pl_module, "nonfinite_guard", None) is self:
            setattr(pl_module, "nonfinite_guard", None)  # noqa: B010

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        ids = getattr(batch, "subject_id", None)
        self._subjects = ids.tolist() if isinstance(ids, torch.Tensor) else []
        self._bad_batch = None

    def handle_step_error(self, pl_module: L.LightningModule, exc: SolverError) -> torch.Tensor:
        """Raise ``exc`` (policy "raise") or return a zero loss wired to every parameter, so
        backward and the DDP all-reduce still run, and mark the batch for skipping."""
        if self.on_nonfinite == "raise":
            raise exc
        self._bad_batch = str(exc)
        params = [p for p in pl_module.parameters() if p.requires_grad]
        return torch.stack([p.sum() * 0.0 for p in params]).sum()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for p in pl_module.parameters() if p.grad is not None]
        bad_grads = [n for n, p in pl_module.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        local_bad = self._bad_batch is not None or bool(bad_grads)
        # Every rank must take the same decision, or their weights drift apart.
        any_bad = trainer.strategy.reduce_boolean_decision(local_bad, all=False)
        if any_bad and self.on_nonfinite == "raise":
            raise SolverError(
                f"non-finite gradients ({', '.join(bad_grads[:5]) or 'on another rank'}) at epoch "
                f"{trainer.current_epoch}, step {trainer.global_step} on subjects {self._listed()}; try a smaller "
                "learning rate (model.lit.lr), gradient clipping (trainer.gradient_clip_val) or "
                "guards.on_nonfinite=skip"
            )
        if any_bad:
            for p in params:
                p.grad = None
            self.skipped += 1
            why = self._bad_batch or (f"non-finite gradients in {bad_grads[:5]}" if bad_grads else "a bad batch on another rank")
            log.warning("skipped the update of step %d (%s); subjects %s", trainer.global_step, why, self._listed())
        pl_module.log("train/skipped_batches", float(self.skipped), on_step=True, on_epoch=False, reduce_fx="max")

    def _listed(self) -> str:
        ids = self._subjects
        return f"{ids[:self.max_listed]}{'...' if len(ids) > self.max_listed else ''}"

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = int(state_dict.get("skipped", 0))

"""Learning-rate schedules named by the ``model/scheduler`` config group (``model.scheduler``).

The optimiser and scheduler are config nodes with ``_partial_: true``: Hydra builds a
partial, :meth:`TwinLitModule.configure_optimizers` calls it with the parameters (optimiser)
or the optimiser (scheduler).
"""

from __future__ import annotations

import torch

# The metric ReduceLROnPlateau steps on unless its config names another (``model.scheduler.monitor``);
# the default checkpoint and early-stopping callbacks watch the same one.
MONITOR = "val/forecast_mae"
DEFAULT_EPOCHS = 100  # the cosine period when trainer.max_epochs is unbounded (-1 or null)


def cosine_annealing(optimizer: torch.optim.Optimizer, max_epochs: int | None = None,
                     min_lr_factor: float = 0.1) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing over ``max_epochs`` epochs from each group's learning rate down to
    ``min_lr_factor`` times the first group's."""
    t_max = int(max_epochs) if max_epochs and int(max_epochs) > 0 else DEFAULT_EPOCHS
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max,
                                                      eta_min=optimizer.param_groups[0]["lr"] * min_lr_factor)


class MonitoredPlateau(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """ReduceLROnPlateau that names the logged metric it steps on (``monitor``): the
    ``monitor`` of the Lightning scheduler dict :meth:`TwinLitModule.configure_optimizers`
    returns. The other arguments are ReduceLROnPlateau's."""

    def __init__(self, optimizer: torch.optim.Optimizer, monitor: str = MONITOR, **kwargs):
        super().__init__(optimizer, **kwargs)
        self.monitor = monitor

"""twinode-train: Hydra entry point for training a twin.

    twinode-train [KEY=VALUE ...] [GROUP=OPTION ...]   (Hydra overrides; --help lists the config)

Bad input (a TwinodeError) ends as one ``error: ...`` line and exit 2, as in every twinode
command (twinode.apps.command_line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TWINODE_ROOT", str(Path.cwd().resolve()))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from twinode.apps import command_line  # noqa: E402
from twinode.config_dir import config_dir  # noqa: E402

EXAMPLE = """twinode-train trainer.max_epochs=10 solver=dopri5 model.twin.latent_dim=32
twinode-train experiment=physionet2012 trainer=gpu"""


def _report(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from twinode.tracking.mlflow_store import ui_command

    table = Table(title="twinode: training finished", show_header=False)
    for key in ("val/forecast_mae", "val/forecast_mae_locf", "val/forecast_nll"):
        if key in result.metrics:
            table.add_row(key, f"{result.metrics[key]:.4f}")
    console = Console()
    console.print(table)
    # Paths and commands as plain lines, so they can be copied whole.
    if result.run_id:
        print(f"MLflow run id:   {result.run_id}")
        print(f"MLflow UI:       {ui_command(result.tracking_uri)}")
    print(f"exported twin:   {result.twin_path if result.twin_path else '(export disabled)'}")
    print(f"best checkpoint: {result.best_checkpoint}")


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _main(cfg: DictConfig) -> float | None:
    from twinode.training.pipeline import train

    result = command_line.exit_on_error(train, cfg)
    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank == 0:  # DDP: one report, from the process that tracked and exported
        _report(result)
    return result.metrics.get(cfg.get("optimized_metric") or "val/forecast_mae")  # the objective for sweepers


def _help_footer() -> str:
    """A Hydra override that ends ``--help`` with an example, as every twinode command's help does."""
    return "hydra.help.footer='--hydra-help lists the options of Hydra itself.\n" + command_line.epilog(EXAMPLE).replace("'", "") + "'"


def main() -> None:
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        sys.argv.append(_help_footer())
    _main()


if __name__ == "__main__":
    main()

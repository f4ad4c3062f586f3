"""`-m hparams_search=optuna`: every trial is its own MLflow run under one parent run of the
sweep, and Optuna optimises the metric the trials report."""

from __future__ import annotations

import pytest
import yaml

from tests.integration.twinode_cli import TINY, run_train, runs_of


@pytest.mark.slow
def test_two_trial_optuna_sweep_tracks_children_under_one_parent(tmp_path):
    sweep_dir = tmp_path / "multirun"
    # TINY fixes latent_dim, hidden and batch_size, so Optuna varies only the learning rate.
    run_train(tmp_path, ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep_dir}",
                         *[o for o in TINY if not o.startswith("trainer.max_epochs=")], "trainer.max_epochs=1"])

    client, runs = runs_of(f"sqlite:///{tmp_path}/mlflow.db")
    parents = [r for r in runs if "twinode.sweep_dir" in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["twinode.sweep_dir"] == str(sweep_dir.resolve())
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    assert all(c.info.status == "FINISHED" for c in children)
    assert parent.info.start_time <= min(c.info.start_time for c in children)  # created before the trials
    assert children[0].data.params["model.lit.lr"] != children[1].data.params["model.lit.lr"]  # Optuna chose them
    for trial in ("0", "1"):
        assert (sweep_dir / trial / "twin.pt").is_file()

    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    objective = [c.data.metrics["val/forecast_mae"] for c in children]
    assert best["best_value"] == pytest.approx(min(objective), rel=1e-6)

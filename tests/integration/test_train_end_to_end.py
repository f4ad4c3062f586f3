"""A real training run: Lightning fit -> MLflow (SQLite) -> twin.pt loaded in a torch-only process."""

import json
import subprocess
import sys
import textwrap

import mlflow
import pytest
from lightning.pytorch import Trainer
from hydra.utils import instantiate

from tests.conftest import COARSE, FAST, compose_train
from twinode.training.pipeline import build_twin, train


def test_fast_dev_run_on_cpu(tmp_path):
    cfg = compose_train(tmp_path, FAST + COARSE)
    dm = instantiate(cfg.data)
    dm.setup()
    lit = instantiate(cfg.model.lit)(twin=build_twin(cfg, dm.dims, dm.spec))
    before = {k: v.clone() for k, v in lit.twin.state_dict().items()}
    trainer = Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(lit, datamodule=dm)
    after = lit.twin.state_dict()
    assert any(not (before[k] == after[k]).all() for k in before), "one optimisation step must change the weights"


def test_train_tracks_run_and_exports_a_torch_only_twin(tmp_path):
    cfg = compose_train(tmp_path, FAST + COARSE + ["trainer.max_epochs=3", "run_name=e2e"])
    result = train(cfg)

    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"val/forecast_mae", "val/forecast_mae_locf"} <= set(run.data.metrics)
    history = client.get_metric_history(result.run_id, "val/forecast_mae")
    assert len(history) >= 3  # one per epoch, plus the final validation of the best weights
    assert run.data.params["model.twin.latent_dim"] == "8"
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "twin.pt", "data_report.json", "forecast.png"} <= artifacts
    png = (result.output_dir / "forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a drawn figure, not an empty file
    assert len(run.data.tags["twinode.data_fingerprint"]) == 64
    assert run.data.tags["twinode.torch_version"]

    # A fresh interpreter where twinode cannot be imported: torch alone loads and runs the twin.
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.modules["twinode"] = None  # make any import of twinode fail
        extra = {{"twinode.json": ""}}
        twin = torch.jit.load({str(result.twin_path)!r}, _extra_files=extra)
        meta = json.loads(extra["twinode.json"])
        D, S = len(meta["measurements"]), len(meta["statics"])
        times = torch.tensor([0.0, 1.0, 2.5, 4.0])
        values = torch.tensor([[80.0, 75.0, 1.5, 37.0]] * 4)
        mask = torch.ones(4, D)
        static = torch.tensor([60.0, 80.0, float("nan")])
        doses = torch.tensor([[5.0, 0.0, 8.0, 0.0]])
        mean, std = twin.forecast(times, values, mask, static, doses, torch.tensor([5.0, 8.0, 12.0]))
        assert mean.shape == (3, D) and std.shape == (3, D)
        assert bool(torch.isfinite(mean).all()) and bool((std > 0).all())
        print(json.dumps({{"run": meta["training_run_id"], "names": [m["name"] for m in meta["measurements"]],
                          "map": mean[:, 1].tolist(), "decoder": meta["decoder"],
                          "risk_validation": meta["risk_validation"]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["run"] == result.run_id
    assert info["names"] == ["HR", "MAP", "LACTATE", "TEMP"]
    assert all(20 < v < 200 for v in info["map"])  # original units (mmHg), not normalised
    assert info["decoder"] == "anchored"  # the default twin
    # The risk head's validation travels with the twin, so a consumer can judge its risk.
    assert 0.0 <= info["risk_validation"]["auroc"] <= 1.0
    assert info["risk_validation"]["positives"] == int(run.data.metrics["val/risk_positives"])

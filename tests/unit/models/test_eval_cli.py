"""twinode-eval on a real checkpoint from a short real training run."""

import json

import pytest
import torch

from tests.conftest import COARSE, FAST, compose_train
from twinode.cli.eval import run as eval_main
from twinode.training.pipeline import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = compose_train(tmp, FAST + COARSE + ["data.source.n_patients=40", "trainer.max_epochs=1", "logger=none",
                                              "export=false", "model.twin.encoder=ode_rnn"])
    return train(cfg).best_checkpoint


@pytest.mark.slow
def test_eval_scores_twin_and_baselines_and_logs_to_mlflow(checkpoint, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert eval_main(["--checkpoint", checkpoint, "--out", str(tmp_path), "--task", "extrapolation", "--tracking-uri", uri]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["meta"]["task"] == "extrapolation" and res["meta"]["encoder"] == "ode_rnn"
    assert set(res["forecast"]) == {"twin", "locf", "history_mean", "population_mean"}
    for r in res["forecast"].values():
        assert r["n_targets"] > 0 and r["mse"] > 0 and 0 < r["mse_minmax"] < 1
    assert res["forecast"]["twin"]["n_targets"] == res["forecast"]["locf"]["n_targets"]  # same targets for all
    assert 0 <= res["forecast"]["twin"]["coverage90"] <= 1
    per = res["forecast"]["locf"]["per_variable"]
    assert set(per) == {"HR", "MAP", "LACTATE", "TEMP"}
    assert sum(v["n"] for v in per.values()) == res["forecast"]["locf"]["n_targets"]
    assert 1.0 < per["MAP"]["mae"] < 40.0 and per["TEMP"]["mae"] < 3.0  # mmHg and degC, not z-scores
    assert "| twin |" in (tmp_path / "eval.md").read_text()
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("twinode-eval").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["twin/mse"] == pytest.approx(res["forecast"]["twin"]["mse"])


def test_eval_rejects_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert eval_main(["--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.ckpt" in err
    assert not (tmp_path / "eval.json").exists()

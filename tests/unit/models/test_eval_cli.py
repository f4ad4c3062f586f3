"""twinode-eval on a real checkpoint from a short real training run."""

import json

import pytest

from tests.conftest import COARSE, FAST, compose_train
from twinode.cli.eval import run as eval_main
from twinode.training.pipeline import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    cfg = compose_train(tmp, FAST + COARSE + ["data.source.n_patients=40", "trainer.max_epochs=1", "logger=none",
                                              "model.twin.encoder=ode_rnn"])
    result = train(cfg)
    return result.best_checkpoint, str(result.twin_path)


@pytest.mark.slow
def test_eval_scores_twin_and_baselines_and_logs_to_mlflow(checkpoint, tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    plot = tmp_path / "figures" / "eval.png"
    assert eval_main(["--checkpoint", checkpoint[0], "--out", str(tmp_path), "--tracking-uri", uri, "--quiet",
                      "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["protocols"]) == {"forecast", "imputation", "interpolation"}
    assert res["meta"]["decoder"] in ("anchored", "latent")
    fc = res["protocols"]["forecast"]
    assert set(fc) == {"twin", "locf", "history_mean", "population_mean", "linear_interpolation", "decay_to_mean"}
    for r in fc.values():
        assert r["n_targets"] > 0 and r["mse_norm"] > 0 and 0 < r["mse_minmax_pooled"] < 1
        assert r["n_targets"] == fc["locf"]["n_targets"]  # the same targets for all
    assert 0 <= fc["twin"]["coverage90"] <= 1 and fc["twin"]["coverage90_by_bucket"]
    per = fc["locf"]["per_variable"]
    assert set(per) == {"HR", "MAP", "LACTATE", "TEMP"}
    assert sum(v["n"] for v in per.values()) == fc["locf"]["n_targets"]
    mean_per_var = sum(v["mse_minmax"] for v in per.values() if v["n"] > 0) / sum(1 for v in per.values() if v["n"] > 0)
    assert fc["locf"]["mse_minmax_per_variable"] == pytest.approx(mean_per_var)
    imp = res["protocols"]["imputation"]
    assert imp["linear_interpolation"]["mse_norm"] < imp["population_mean"]["mse_norm"]
    report = (tmp_path / "eval.md").read_text()
    assert "| twin |" in report and "largest stay's share of the twin's error |" in report
    for v in fc["twin"]["per_variable"].values():  # each channel says how many stays hold it, and how unevenly
        assert 0 < v["stays"] <= res["meta"]["held_out_subjects"] and 0 < v["top_stay_share"] <= 1
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("twinode-eval").experiment_id])
    assert len(runs) == 1
    assert runs[0].data.metrics["forecast/twin/mse_norm"] == pytest.approx(fc["twin"]["mse_norm"])
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {"eval.md", "eval.png"}


def test_eval_rejects_a_corrupt_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert eval_main(["--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bad.ckpt" in err
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.slow
def test_exported_twin_scores_like_its_checkpoint(checkpoint, tmp_path):
    ckpt, twin_pt = checkpoint
    assert eval_main(["--checkpoint", ckpt, "--out", str(tmp_path / "ckpt")]) == 0
    data = ["--override", "data.source.n_patients=40", "--override", "data.eval_batch_size=64"]
    assert eval_main(["--twin", twin_pt, "--out", str(tmp_path / "pt")] + data) == 0
    a = json.loads((tmp_path / "ckpt" / "eval.json").read_text())
    b = json.loads((tmp_path / "pt" / "eval.json").read_text())
    for proto in a["protocols"]:
        for key in ("mse_minmax_pooled", "mse_norm", "nll", "coverage90"):
            assert b["protocols"][proto]["twin"][key] == pytest.approx(a["protocols"][proto]["twin"][key], rel=1e-4), key
    assert b["risk"]["twin"].keys() == a["risk"]["twin"].keys()
    for key, value in a["risk"]["twin"].items():
        assert b["risk"]["twin"][key] == pytest.approx(value), key


def test_exported_twin_on_data_it_was_not_trained_on_is_refused(checkpoint, tmp_path, capsys):
    _, twin_pt = checkpoint
    assert eval_main(["--twin", twin_pt, "--out", str(tmp_path), "--override", "data.source.n_patients=50"]) == 2
    assert "does not normalise as" in capsys.readouterr().err

"""Training publishes a registered pyfunc twin (alias candidate); promote -> champion; consumers load it."""

from __future__ import annotations

import json

import mlflow
import polars as pl
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.integration.published_twin import train_and_publish
from twinode.cli.export import main as export_main
from twinode.apps.command_line import exit_code
from twinode.cli.predict import main as predict_main
from twinode.export.torchscript import load_verified_twin
from twinode.tracking.registry import model_name_for, tracking_uri_set


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return train_and_publish(tmp_path_factory.mktemp("registry"))


@pytest.fixture
def tracking(published):
    with tracking_uri_set(published.tracking_uri):
        yield MlflowClient(published.tracking_uri)


def test_training_registers_a_candidate_with_the_raw_twin(published, tracking):
    version = tracking.get_model_version_by_alias(published.name, "candidate")
    assert version.run_id == published.result.run_id
    _, meta = load_verified_twin(published.result.twin_path)
    assert version.tags["twinode.weights_sha256"] == meta["weights_sha256"]
    artifacts = {a.path for a in tracking.list_artifacts(published.result.run_id)}
    assert "twin.pt" in artifacts  # the raw TorchScript file, for torch / C++ consumers
    info = mlflow.models.get_model_info(f"models:/{published.name}@candidate")
    assert info.signature is not None and "query_times" in str(info.signature.inputs)
    with pytest.raises(mlflow.exceptions.MlflowException):
        tracking.get_model_version_by_alias(published.name, "champion")  # promotion is a separate step


def test_promote_then_consume_by_alias(published, tracking, capsys, tmp_path):
    version = tracking.get_model_version_by_alias(published.name, "candidate").version
    assert exit_code(export_main, ["promote", "--name", published.name, "--version", str(version), "--tracking-uri", published.tracking_uri]) == 0
    assert f"{published.name}@champion -> version {version}" in capsys.readouterr().out
    assert tracking.get_model_version_by_alias(published.name, "champion").version == version

    model = mlflow.pyfunc.load_model(f"models:/{published.name}@champion")
    info = mlflow.models.get_model_info(f"models:/{published.name}@champion")
    example = json.loads(json.dumps(_logged_example(info)))  # plain JSON-like records
    rows = [r.model_dump() if hasattr(r, "model_dump") else r for r in model.predict(example)]
    twin, meta = load_verified_twin(published.result.twin_path)
    names = [m["name"] for m in meta["measurements"]]
    req = example[0]
    assert len(rows) == len(req["query_times"]) * len(names)
    # same numbers as the TorchScript file itself
    hist_t = sorted({o["time"] for o in req["history"]})
    values = torch.zeros(len(hist_t), len(names))
    for o in req["history"]:
        values[hist_t.index(o["time"]), names.index(o["name"])] = o["value"]
    static = torch.tensor([s["value"] for s in req["static"]])
    doses = torch.tensor([[d["time_h"], 0.0, d["amount"], d["duration_h"]] for d in req["plan"]])
    with torch.no_grad():
        mean, std = twin.forecast(torch.tensor(hist_t), values, torch.ones_like(values), static, doses, torch.tensor(req["query_times"]))
    got = torch.tensor([r["mean"] for r in rows]).reshape(len(req["query_times"]), len(names))
    assert torch.allclose(got, mean, rtol=1e-6)
    assert all(r["q05"] < r["mean"] < r["q95"] for r in rows)

    # twinode-predict reads the same version by alias
    (tmp_path / "h.csv").write_text("subject_id,time,code,numeric_value\n1,0,HR,90\n1,1,MAP,70\n")
    assert exit_code(predict_main, ["--twin", f"models:/{published.name}@champion", "--tracking-uri", published.tracking_uri,
                  "--history", str(tmp_path / "h.csv"), "--horizon", "4", "--out", str(tmp_path / "f.parquet"), "--samples", "20"]) == 0
    assert pl.read_parquet(tmp_path / "f.parquet").height == 5 * len(names)


def test_promote_unknown_version_fails_clearly(published, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["promote", "--name", published.name, "--version", "99", "--tracking-uri", published.tracking_uri])
    assert exit_info.value.code == 2 and "has no version 99" in capsys.readouterr().err


def test_pyfunc_rejects_unknown_names(published, tracking):
    model = mlflow.pyfunc.load_model(f"models:/{published.name}@candidate")
    bad = {"history": [{"time": 0.0, "name": "GLUCOSE", "value": 5.0}], "static": [], "plan": [], "query_times": [1.0]}
    with pytest.raises(Exception, match="GLUCOSE"):
        model.predict([bad])


def _logged_example(info) -> list:
    from mlflow.models import Model

    local = mlflow.artifacts.download_artifacts(info.model_uri)
    example = Model.load(local).load_input_example(local)
    return example if isinstance(example, list) else [example]


def test_default_model_name_is_the_dataset_base_name():
    assert model_name_for({"model_name": None}, "synthetic_icu(n=60,seed=0)") == "twinode-synthetic_icu"
    assert model_name_for({"model_name": "icu-twin"}, "x") == "icu-twin"
    with pytest.raises(Exception, match="registry.model_name"):
        model_name_for({"model_name": "a/b"}, "x")


def test_publishing_leaves_the_tracking_uri_alone(published, tmp_path):
    import os

    before = (os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri())
    with tracking_uri_set(published.tracking_uri):
        assert mlflow.get_tracking_uri() == published.tracking_uri
    assert (os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()) == before

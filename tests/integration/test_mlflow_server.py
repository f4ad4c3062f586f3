"""Train against a real `mlflow server` over HTTP and read the run, its artifacts and the
registered model back through the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lightning
import mlflow
import pytest
import torch

from tests.integration.twinode_cli import TINY, run_train, runs_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    log = open(store / "server.log", "w")
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{store}/mlflow.db",
                             "--default-artifact-root", str(store / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # start-up takes 10-70 s on 2 busy cores
        while True:  # bounded wait for readiness
            assert proc.poll() is None, (store / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server not ready within 180 s"
            time.sleep(0.5)
        yield url, store
    finally:  # the server and its workers: the whole session we started, nothing else
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.mark.slow
def test_training_over_http_is_read_back_from_the_server(tmp_path, mlflow_server):
    url, store = mlflow_server
    root = tmp_path / "work"
    root.mkdir()
    run_train(root, TINY + [f"hydra.run.dir={root}/out", "run_name=over-http"], MLFLOW_TRACKING_URI=url)
    assert not (root / "mlflow.db").exists()  # nothing went to the local default store

    client, runs = runs_of(url)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "over-http"
    assert {"val/forecast_mae", "val/forecast_mae_locf"} <= set(run.data.metrics)
    tags = run.data.tags
    assert tags["twinode.torch_version"] == torch.__version__ and tags["twinode.mlflow_version"] == mlflow.__version__
    assert tags["twinode.lightning_version"] == lightning.__version__
    assert len(tags["twinode.data_fingerprint"]) == 64 and tags["twinode.git_commit"]
    assert {"config.yaml", "twin.pt"} <= {a.path for a in client.list_artifacts(run.info.run_id)}

    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="twin.pt",
                                                tracking_uri=url, dst_path=str(tmp_path / "dl"))
    extra = {"twinode.json": ""}
    torch.jit.load(local, _extra_files=extra)
    assert json.loads(extra["twinode.json"])["training_run_id"] == run.info.run_id

    registered = client.search_registered_models()
    assert registered, "the pipeline registers the exported twin"
    version = client.get_model_version_by_alias(registered[0].name, "candidate")
    assert version.run_id == run.info.run_id
    assert (store / "mlflow.db").is_file()  # the server's own store holds it all

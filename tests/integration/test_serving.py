"""`mlflow models serve -m models:/NAME@champion` answers the logged serving example on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
from mlflow.models import Model

from tests.integration.published_twin import train_and_publish
from twinode.tracking.registry import promote, tracking_uri_set

STARTUP_S = 180  # bounded wait for the server to answer /ping


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    pub = train_and_publish(tmp_path_factory.mktemp("serving"))
    client = mlflow.tracking.MlflowClient(pub.tracking_uri)
    version = client.get_model_version_by_alias(pub.name, "candidate").version
    promote(pub.name, version, tracking_uri=pub.tracking_uri)
    return pub


@pytest.mark.slow  # ~80 s on 2 shared cores: a training run plus the server start-up
def test_serve_champion_and_post_the_logged_example(champion, tmp_path):
    with tracking_uri_set(champion.tracking_uri):
        local = mlflow.artifacts.download_artifacts(f"models:/{champion.name}@champion", dst_path=str(tmp_path / "m"))
    payload = (Path(local) / "serving_input_example.json").read_text()
    assert "query_times" in payload

    port = _free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    # mlflow runs `uvicorn` by name: the venv's bin folder must be on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion.tracking_uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([mlflow_bin, "models", "serve", "-m", f"models:/{champion.name}@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, "server exited: " + (tmp_path / "server.log").read_text()[-2000:]
            try:
                if _get(f"http://127.0.0.1:{port}/ping") == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "server did not answer /ping in time: " + (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(1.0)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=payload.encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own process group: gunicorn/uvicorn workers too
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()
    rows = answer["predictions"]
    request = json.loads(payload)
    n_queries = len(request["inputs"][0]["query_times"]) if "inputs" in request else len(request["dataframe_records"][0]["query_times"])
    model_meta = Model.load(local)
    assert model_meta.signature is not None
    assert len(rows) == n_queries * 4  # HR, MAP, LACTATE, TEMP
    assert {r["name"] for r in rows} == {"HR", "MAP", "LACTATE", "TEMP"}
    assert all(r["q05"] < r["mean"] < r["q95"] for r in rows)

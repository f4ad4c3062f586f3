"""MLflow model registry: log the twin as a pyfunc model, register a version, move aliases.

A training run publishes its exported ``twin.pt`` as an MLflow model from code
(:mod:`twinode.export.pyfunc`, which wraps the TorchScript file), registers it under the
configured name and gives the new version the alias ``candidate``. Promotion to
``champion`` is a separate, deliberate step (``twinode-export promote``); consumers load
``models:/NAME@champion``.

Each version carries the tag ``twinode.twin_sha256``, the sha256 of the whole twin.pt, kept
in the tracking store, apart from the artifacts: :func:`fetch_registered_twin` and
:func:`load_verified_pyfunc` check the downloaded file against it, so a swapped or edited
artifact is refused. Publishing is idempotent per run and weights (resuming a finished run
registers nothing new).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from twinode.errors import ConfigError, ExportError
from twinode.export.integrity import TAG as TWIN_SHA256_TAG
from twinode.export.integrity import Integrity, file_sha256, verify_file
from twinode.export.torchscript import load_verified_twin

PYFUNC_CODE = Path(__file__).resolve().parents[1] / "export" / "pyfunc.py"
MODEL_ARTIFACT = "twin_pyfunc"  # artifact path (model name) of the pyfunc model inside the run
CANDIDATE, CHAMPION = "candidate", "champion"
# What the logged model needs at serving time; twinode itself is not one of them.
PIP_REQUIREMENTS = [f"torch=={__import__('torch').__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}", "pydantic>=2"]


@dataclass(frozen=True)
class PublishedTwin:
    name: str
    version: str
    alias: str
    model_uri: str  # models:/NAME/VERSION


@contextmanager
def tracking_uri_set(uri: str | None):
    """Point mlflow's fluent API at ``uri`` for a block. ``mlflow.set_tracking_uri`` also
    writes $MLFLOW_TRACKING_URI (which the train config reads), so both are restored."""
    if not uri:
        yield
        return
    env, previous = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


def model_name_for(registry_cfg, dataset: str) -> str:
    # Dataset names may carry parameters, e.g. "synthetic_icu(n=60,seed=0)": keep the base name.
    name = registry_cfg.get("model_name") or "twinode-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.split("(")[0]).strip("-")
    if not isinstance(name, str) or not name.strip() or "/" in name or "@" in name:
        raise ConfigError("registry.model_name", name, hint="a registered model name without '/' or '@'")
    return name


def serving_example(meta: dict) -> dict:
    """A valid forecast request built from the twin's own names and training means."""
    norm = meta["normalisation"]
    hist = [{"time": float(t), "name": m["name"], "value": round(float(norm["meas_mean"][i]), 3)}
            for t in (0.0, 2.0, 4.0) for i, m in enumerate(meta["measurements"])]
    static = [{"name": s["name"], "value": round(float(norm["static_mean"][i]), 3)} for i, s in enumerate(meta["statics"])]
    plan = [{"name": d["name"], "time_h": 5.0, "amount": round(float(norm["dose_scale"][i]), 3), "duration_h": 0.0}
            for i, d in enumerate(meta["interventions"])]
    return {"history": hist, "static": static, "plan": plan, "query_times": [6.0, 10.0, 16.0]}


def publish_twin(twin_path: str | Path, *, run_id: str, tracking_uri: str, model_name: str,
                 alias: str = CANDIDATE) -> PublishedTwin:
    """Log ``twin.pt`` as a pyfunc model in run ``run_id``, register it, set ``alias`` on the new version.

    When run ``run_id`` already registered these very weights under ``model_name`` (a resumed,
    already finished run), that version is returned and nothing is logged, registered or moved.
    """
    _, meta = load_verified_twin(twin_path)  # never publish a file that fails its own checks
    client = MlflowClient(tracking_uri)
    existing = _registered_by_run(client, model_name, run_id, meta["weights_sha256"])
    if existing is not None:
        return PublishedTwin(model_name, existing, alias, f"models:/{model_name}/{existing}")
    twin_sha = file_sha256(twin_path)
    try:
        with tracking_uri_set(tracking_uri), mlflow.start_run(run_id=run_id):
            if "twin.pt" not in {a.path for a in client.list_artifacts(run_id)}:
                mlflow.log_artifact(str(twin_path))  # the raw TorchScript file, for torch/C++ consumers
            with tempfile.TemporaryDirectory() as tmp:  # metadata beside the model, readable without torch
                (Path(tmp) / "twinode.json").write_text(json.dumps(meta, indent=2))
                mlflow.log_artifact(str(Path(tmp) / "twinode.json"), artifact_path=MODEL_ARTIFACT + "_meta")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT, python_model=str(PYFUNC_CODE), artifacts={"twin": str(twin_path)},
                input_example=[serving_example(meta)], pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=model_name, model_config={"twin_sha256": twin_sha},
            )
    except MlflowException as exc:
        raise ExportError(f"could not log or register the twin as '{model_name}' at {tracking_uri}: {exc.message}") from exc
    version = str(info.registered_model_version)
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, "twinode.weights_sha256", meta["weights_sha256"])
    client.set_model_version_tag(model_name, version, TWIN_SHA256_TAG, twin_sha)
    return PublishedTwin(model_name, version, alias, f"models:/{model_name}/{version}")


def _registered_by_run(client: MlflowClient, model_name: str, run_id: str, weights_sha256: str) -> str | None:
    try:
        versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException:
        return None  # no such model yet
    same = [v for v in versions if (v.tags or {}).get("twinode.weights_sha256") == weights_sha256]
    return str(min(int(v.version) for v in same)) if same else None


def promote(name: str, version: str, *, tracking_uri: str, alias: str = CHAMPION) -> str:
    """Point ``alias`` (default ``champion``) at version ``version`` of model ``name``; returns the previous version or ''."""
    client = MlflowClient(tracking_uri)
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise ExportError(f"model '{name}' has no version {version} at {tracking_uri}; "
                          "list versions with `mlflow models` or the MLflow UI") from exc
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = ""
    client.set_registered_model_alias(name, alias, str(version))
    return str(previous)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` -> (NAME, None, ALIAS); ``models:/NAME/VERSION`` -> (NAME, VERSION, None)."""
    if not isinstance(uri, str) or not uri.startswith("models:/"):
        raise ExportError(f"expected a registry URI models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        if name and alias and "/" not in alias:
            return name, None, alias
    else:
        name, _, version = rest.rpartition("/")
        if name and version.isdigit():
            return name, version, None
    raise ExportError(f"expected a registry URI models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")


def resolve_version(uri: str, tracking_uri: str | None = None):
    """The registry's ModelVersion behind ``uri`` (an alias resolved once, here)."""
    name, version, alias = parse_model_uri(uri)
    client = MlflowClient(tracking_uri) if tracking_uri else MlflowClient()
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise ExportError(f"cannot resolve {uri} at {tracking_uri or mlflow.get_tracking_uri()}: {exc.message}") from None


def _download_version(mv, dest: str | Path, tracking_uri: str | None) -> Path:
    uri = f"models:/{mv.name}/{mv.version}"  # the resolved version, not the alias: it cannot move in between
    try:
        with tracking_uri_set(tracking_uri):
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dest)))
    except MlflowException as exc:
        raise ExportError(f"cannot fetch {uri} from {tracking_uri or mlflow.get_tracking_uri()}: {exc.message}") from None


def fetch_verified_twin(uri: str, dest: str | Path, tracking_uri: str | None = None) -> tuple[Path, Integrity]:
    """Download the TorchScript file of ``models:/NAME@ALIAS`` (or ``/VERSION``) into ``dest`` and
    check its sha256 against the version's ``twinode.twin_sha256`` tag (ExportError on a mismatch).
    A version published before the tag existed gets ``Integrity.verified == False``."""
    mv = resolve_version(uri, tracking_uri)
    local = _download_version(mv, dest, tracking_uri)
    found = sorted(local.rglob("twin.pt"))
    if not found:
        raise ExportError(f"{uri} holds no twin.pt artifact; it was not published by twinode")
    expected = (mv.tags or {}).get(TWIN_SHA256_TAG)
    where = f"the registry tag {TWIN_SHA256_TAG} of {mv.name} version {mv.version}"
    return found[0], verify_file(found[0], expected, source=where, use_sidecar=False) if expected else \
        verify_file(found[0], None, use_sidecar=False)


def fetch_registered_twin(uri: str, dest: str | Path, tracking_uri: str | None = None) -> Path:
    """:func:`fetch_verified_twin` without the report: the verified path (a mismatch raises)."""
    return fetch_verified_twin(uri, dest, tracking_uri)[0]


def load_verified_pyfunc(uri: str, tracking_uri: str | None = None, dest: str | Path | None = None):
    """``mlflow.pyfunc.load_model`` of a registered twin after checking its twin.pt against the
    registry tag: the model is loaded from the verified local copy, never fetched twice."""
    mv = resolve_version(uri, tracking_uri)
    tmp = None if dest is not None else tempfile.mkdtemp(prefix="twinode-model-")
    local = _download_version(mv, dest or tmp, tracking_uri)
    found = sorted(local.rglob("twin.pt"))
    expected = (mv.tags or {}).get(TWIN_SHA256_TAG)
    if not found or not expected:
        raise ExportError(f"{uri}: version {mv.version} has no twin.pt or no {TWIN_SHA256_TAG} tag to check it "
                          "against; publish it again with this twinode")
    verify_file(found[0], expected, source=f"the registry tag {TWIN_SHA256_TAG} of {mv.name} version {mv.version}",
                use_sidecar=False)
    return mlflow.pyfunc.load_model(str(local))

"""The registry records the sha256 of the whole twin.pt apart from the artifacts; a swapped
artifact behind models:/NAME@candidate is refused; publishing twice registers one version."""

from __future__ import annotations

import shutil

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.integration.published_twin import train_and_publish
from tests.unit.export.conftest import NORMALISER, make_twin
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.errors import ExportError
from twinode.export.integrity import TAG, file_sha256
from twinode.export.torchscript import export_twin, load_verified_twin
from twinode.tracking.registry import fetch_verified_twin, load_verified_pyfunc, publish_twin, tracking_uri_set


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return train_and_publish(tmp_path_factory.mktemp("integrity"))


def test_file_sha256_is_recorded_in_the_registry_and_the_run(published, tmp_path):
    client = MlflowClient(published.tracking_uri)
    version = client.get_model_version_by_alias(published.name, "candidate")
    digest = file_sha256(published.result.twin_path)
    assert version.tags[TAG] == digest
    assert client.get_run(published.result.run_id).data.tags[TAG] == digest
    path, integrity = fetch_verified_twin(f"models:/{published.name}@candidate", tmp_path, published.tracking_uri)
    assert integrity.verified and integrity.sha256 == digest and file_sha256(path) == digest
    model = load_verified_pyfunc(f"models:/{published.name}@candidate", published.tracking_uri, tmp_path / "py")
    assert hasattr(model, "predict")


def test_publishing_again_registers_no_duplicate(published):
    client = MlflowClient(published.tracking_uri)
    before = client.search_model_versions(f"name = '{published.name}'")
    again = publish_twin(published.result.twin_path, run_id=published.result.run_id,
                         tracking_uri=published.tracking_uri, model_name=published.name)
    after = client.search_model_versions(f"name = '{published.name}'")
    assert len(after) == len(before) == 1 and again.version == str(before[0].version)


def test_swapped_artifact_is_refused(published, tmp_path):
    forged = export_twin(make_twin(seed=7), NORMALISER, feature_spec(), tmp_path / "forged" / "twin.pt",
                         solver={"name": "rk4"})
    load_verified_twin(forged)  # a valid twin with a valid embedded hash: only the registry tag tells
    stored = [p for p in (published.root / "mlartifacts").rglob("twin.pt") if "artifacts" in p.parent.name]
    assert stored, "the registered model's twin.pt artifact"
    originals = {p: p.read_bytes() for p in stored}
    for p in stored:
        shutil.copy(forged, p)
    uri = f"models:/{published.name}@candidate"
    try:
        with pytest.raises(ExportError, match=f"does not match .* registry tag {TAG}"):
            fetch_verified_twin(uri, tmp_path / "dl", published.tracking_uri)
        with pytest.raises(ExportError, match=f"registry tag {TAG}"):
            load_verified_pyfunc(uri, published.tracking_uri, tmp_path / "dl2")
        with tracking_uri_set(published.tracking_uri), pytest.raises(Exception, match="sha256 recorded when"):
            mlflow.pyfunc.load_model(uri)  # plain MLflow, no twinode: the model's own record of the file
    finally:  # the other tests of this module use the same store
        for p, data in originals.items():
            p.write_bytes(data)


def test_open_twin_reports_what_it_checked(published, tmp_path):
    from twinode.export.integrity import open_twin

    uri = f"models:/{published.name}@candidate"
    _, meta, integrity = open_twin(uri, tmp_path / "a", tracking_uri=published.tracking_uri)
    assert integrity.verified and f"registry tag {TAG}" in integrity.statement()
    with pytest.raises(ExportError, match="from --sha256"):
        open_twin(uri, tmp_path / "b", sha256="0" * 64, tracking_uri=published.tracking_uri)
    _, _, integrity = open_twin(published.result.twin_path, tmp_path)
    assert integrity.checked_against == "the sidecar twin.pt.sha256"

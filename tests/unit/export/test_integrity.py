"""The whole-file sha256 recorded outside twin.pt: a forged file whose embedded hash was
recomputed passes the embedded check, and is refused by every check that reads the outside record."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.unit.export.conftest import NORMALISER, make_twin
from twinode.data.simulators.synthetic_icu import feature_spec
from twinode.errors import ExportError
from twinode.export.integrity import (EMBEDDED_ONLY, file_sha256, load_checked_twin, read_sidecar, sidecar_path,
                                      verify_file)
from twinode.export.torchscript import export_twin, load_verified_twin, weights_sha256


def _forge(original, forged_path) -> None:
    """What an attacker with write access does: shift the weights, recompute the embedded hash."""
    extra = {"twinode.json": ""}
    module = torch.jit.load(str(original), _extra_files=extra)
    meta = json.loads(extra["twinode.json"])
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5)
    meta["weights_sha256"] = weights_sha256(module)
    meta["measurements"][0]["name"], meta["measurements"][1]["name"] = meta["measurements"][1]["name"], \
        meta["measurements"][0]["name"]  # HR and MAP swapped
    torch.jit.save(module, str(forged_path), _extra_files={"twinode.json": json.dumps(meta)})


@pytest.fixture
def exported(tmp_path):
    return export_twin(make_twin(), NORMALISER, feature_spec(), tmp_path / "twin.pt", solver={"name": "rk4"})


def test_export_writes_a_sidecar_with_the_file_sha256(exported):
    assert sidecar_path(exported).read_text() == f"{file_sha256(exported)}  twin.pt\n"  # sha256sum format
    assert verify_file(exported).checked_against == "the sidecar twin.pt.sha256"


def test_forged_twin_with_recomputed_embedded_hash_is_refused(exported, tmp_path):
    original_sha = file_sha256(exported)
    forged = tmp_path / "forged.pt"
    _forge(exported, forged)
    load_verified_twin(forged)  # the embedded check alone is fooled: that is the finding
    shutil.copy(forged, exported)  # the file replaced, its sidecar left as exported
    with pytest.raises(ExportError, match="does not match .* from the sidecar twin.pt.sha256"):
        load_checked_twin(exported)
    with pytest.raises(ExportError, match="does not match .* from --sha256"):
        load_checked_twin(forged, original_sha)  # the value printed by twinode-export, from a trusted channel


def test_without_an_outside_record_the_load_says_so(exported):
    sidecar_path(exported).unlink()
    _, meta, integrity = load_checked_twin(exported)
    assert not integrity.verified and EMBEDDED_ONLY in integrity.statement()
    _, _, integrity = load_checked_twin(exported, file_sha256(exported).upper())
    assert integrity.verified and "--sha256" in integrity.statement()


@pytest.mark.parametrize("bad", ["abc", "g" * 64, ""])
def test_malformed_expected_sha256_is_a_clear_error(exported, bad):
    with pytest.raises(ExportError, match="64 hex digits"):
        verify_file(exported, bad)
    sidecar_path(exported).write_text(bad + "\n")
    with pytest.raises(ExportError, match="sidecar|64 hex digits"):
        read_sidecar(exported)


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.pop("measurements"), "measurements"),
    (lambda m: m.__setitem__("statics", "AGE"), "statics"),
    (lambda m: m["interventions"].append({"unit": "mg"}), "interventions"),
    (lambda m: m.__setitem__("methods", None), "methods"),
    (lambda m: m["measurements"].append(dict(m["measurements"][0])), "measurements"),
])
def test_malformed_metadata_is_a_clear_error(exported, tmp_path, edit, field):
    extra = {"twinode.json": ""}
    module = torch.jit.load(str(exported), _extra_files=extra)
    meta = json.loads(extra["twinode.json"])
    edit(meta)
    bad = tmp_path / "bad.pt"
    torch.jit.save(module, str(bad), _extra_files={"twinode.json": json.dumps(meta)})
    with pytest.raises(ExportError, match=f"field '{field}'.*re-export"):
        load_verified_twin(bad)


KEY = "k" * 32


def test_signed_export_and_load(tmp_path, monkeypatch):
    from twinode.export.integrity import signature_path

    monkeypatch.setenv("TWINODE_SIGNING_KEY", KEY)
    path = export_twin(make_twin(), NORMALISER, feature_spec(), tmp_path / "twin.pt", solver={"name": "rk4"})
    assert signature_path(path).read_text().startswith("hmac-sha256 ")
    _, _, integrity = load_checked_twin(path)
    assert integrity.signed and "signature valid" in integrity.statement()

    forged = tmp_path / "forged.pt"  # an attacker rewrites the file and its sha256 sidecar, not the key
    _forge(path, forged)
    shutil.copy(forged, path)
    sidecar_path(path).write_text(f"{file_sha256(path)}  twin.pt\n")
    with pytest.raises(ExportError, match="signature in twin.pt.hmac does not match"):
        load_checked_twin(path)

    monkeypatch.setenv("TWINODE_SIGNING_KEY", "another key, long enough")
    signature_path(path).unlink()
    with pytest.raises(ExportError, match="no signature twin.pt.hmac .* one is required"):
        load_checked_twin(path)


def test_short_signing_key_is_refused(exported, monkeypatch):
    monkeypatch.setenv("TWINODE_SIGNING_KEY", "short")
    with pytest.raises(ExportError, match="at least 16"):
        load_checked_twin(exported)

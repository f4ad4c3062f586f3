"""twin.pt as a consumer sees it: torch only (twinode unimportable), metadata, sha256 checks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch

from tests.unit.export.conftest import example_inputs
from twinode.errors import ExportError
from twinode.export.torchscript import FORMAT_VERSION, load_twin, load_verified_twin, weights_sha256


def test_torch_only_process_runs_every_method(twin_file, tmp_path):
    args = example_inputs()
    torch.save(args, tmp_path / "inputs.pt")  # plain tensors: loadable with weights_only=True
    script = textwrap.dedent(f"""
        import json, sys, torch
        sys.modules["twinode"] = None  # any import of twinode now fails
        extra = {{"twinode.json": ""}}
        twin = torch.jit.load({str(twin_file)!r}, _extra_files=extra)
        meta = json.loads(extra["twinode.json"])
        args = torch.load({str(tmp_path / 'inputs.pt')!r}, weights_only=True)
        with torch.no_grad():
            mean, std = twin.forecast(*args)
            samples = twin.sample(*args, 8, 3)
            risk = twin.risk(*args[:5])
            post = twin.posterior(*args[:4])
            decoded, _ = twin.decode(post, args[4], args[5])
            state = twin.encode_start(args[3])
            for i in range(args[0].shape[0]):
                state = twin.encode_step(state, args[0][i], args[1][i], args[2][i])
            streamed, _ = twin.decode_draws(state, torch.zeros(1, 8), args[4], args[5])
        torch.save({{"mean": mean, "std": std, "samples": samples, "risk": risk, "decoded": decoded,
                     "streamed": streamed[0]}}, {str(tmp_path / 'out.pt')!r})
        print(json.dumps(meta["methods"]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [
        "forecast", "sample", "forecast_batch", "posterior", "decode", "risk", "encode_start", "encode_step", "decode_draws"]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    torch.testing.assert_close(got["decoded"], got["mean"])
    torch.testing.assert_close(got["streamed"], got["mean"], rtol=1e-5, atol=1e-5)
    twin, _ = load_twin(twin_file)
    with torch.no_grad():
        mean, std = twin.forecast(*example_inputs())
        assert torch.equal(got["mean"], mean) and torch.equal(got["std"], std)
        assert torch.equal(got["samples"], twin.sample(*example_inputs(), 8, 3))
        assert got["risk"].dim() == 0


def test_metadata_is_the_documented_contract(twin_file):
    twin, meta = load_verified_twin(twin_file)
    assert meta["format_version"] == FORMAT_VERSION and meta["time_unit"] == "hours"
    assert [m["name"] for m in meta["measurements"]] == ["HR", "MAP", "LACTATE", "TEMP"]
    assert [m["name"] for m in meta["interventions"]] == ["VASO"]
    assert [m["name"] for m in meta["statics"]] == ["AGE", "WEIGHT", "SEX"]
    assert meta["measurements"][1]["unit"] == "mmHg" and meta["measurements"][2]["transform"] == "log1p"
    assert {"meas_mean", "meas_std", "static_mean", "static_std", "dose_scale"} <= set(meta["normalisation"])
    assert meta["solver"]["name"] == "rk4" and meta["training_run_id"] == "run-123"
    assert meta["data_fingerprint"] == "f" * 64 and meta["max_query_span_h"] == 10000.0
    assert meta["weights_sha256"] == weights_sha256(twin)


def _rewrite(src, dst, edit):
    """Copy a TorchScript zip, passing each member's bytes through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))


def test_tampered_weights_are_refused(twin_file, tmp_path):
    bad = tmp_path / "tampered.pt"

    def flip(name, data):  # change one float of the first tensor blob
        if "/data/0" in name and not name.endswith("/data/0/") and len(data) >= 4:
            return bytes([data[0] ^ 0x40]) + data[1:]
        return data

    _rewrite(twin_file, bad, flip)
    load_twin(bad)  # still a loadable TorchScript file...
    with pytest.raises(ExportError, match="does not match the exported"):
        load_verified_twin(bad)  # ...but not the exported weights


def test_truncated_or_foreign_files_are_refused(twin_file, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(twin_file.read_bytes()[: twin_file.stat().st_size // 2])
    with pytest.raises(ExportError, match="not a loadable TorchScript twin"):
        load_verified_twin(cut)
    with pytest.raises(ExportError, match="twin file not found"):
        load_verified_twin(tmp_path / "nope.pt")
    no_meta = tmp_path / "no_meta.pt"
    _rewrite(twin_file, no_meta, lambda n, d: b"{}" if n.endswith("extra/twinode.json") else d)
    with pytest.raises(ExportError, match="twin format version None"):
        load_verified_twin(no_meta)

"""Script the trained twin into ``twin.pt`` with its metadata (the export contract).

Beside ``twin.pt`` the export writes ``twin.pt.sha256``, the sha256 of the whole file
(:mod:`twinode.export.integrity`); the ``weights_sha256`` inside the metadata only guards
against accidental damage.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import torch

from twinode.data.rules import event_policies
from twinode.data.schema import FeatureSpec
from twinode.errors import ExportError
from twinode.export.checks import MAX_SPAN_H
from twinode.export.integrity import sign_file, signing_key, write_sidecar
from twinode.export.predictor import TwinPredictor
from twinode.models.twin import PatientTwin
from twinode.solvers import TorchdiffeqSolver, with_scriptable_solvers

FORMAT_VERSION = 1
METADATA_FILE = "twinode.json"


def weights_sha256(module: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer, in name order: identifies the weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def build_predictor(twin: PatientTwin, normaliser: dict, spec: FeatureSpec) -> TwinPredictor:
    log1p = [f.transform == "log1p" for f in spec.measurements]
    return TwinPredictor(twin, normaliser["meas_mean"], normaliser["meas_std"], normaliser["static_mean"],
                         normaliser["static_std"], normaliser["dose_scale"], log1p,
                         [f.valid_range for f in spec.measurements])


def streams(predictor: TwinPredictor) -> bool:
    """Whether the twin supports encode_start / encode_step / decode_draws."""
    from twinode.models.encoders import GRUDeltaEncoder

    return (isinstance(predictor.twin.encoder, GRUDeltaEncoder) and not predictor.twin.anchored
            and not predictor.twin.encoder_doses)


def export_metadata(predictor: TwinPredictor, spec: FeatureSpec, normaliser: dict, *, solver: dict,
                    run_id: str | None, data_fingerprint: str | None, risk_validation: dict | None = None) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "time_unit": "hours",
        # code + match let a consumer map raw event codes (e.g. MEDS "LAB//220045//bpm") to channels.
        "measurements": [{"name": f.name, "unit": f.unit, "transform": f.transform, "code": f.code, "match": f.match}
                         for f in spec.measurements],
        "interventions": [{"name": f.name, "unit": f.unit, "kind": f.kind, "code": f.code, "match": f.match}
                          for f in spec.interventions],
        "statics": [{"name": f.name, "unit": f.unit, "code": f.code, "match": f.match} for f in spec.statics],
        "outcomes": [f.name for f in spec.outcomes],
        "dataset": spec.name,
        "normalisation": normaliser,
        "solver": solver,
        "training_run_id": run_id,
        "data_fingerprint": data_fingerprint,
        "weights_sha256": weights_sha256(predictor),
        "methods": ["forecast", "sample", "forecast_batch", "posterior", "decode"]
        + (["risk"] if predictor.has_risk else [])
        # Streaming (one observation at a time) where the encoder is the GRU and the decoder does
        # not read the history.
        + (["encode_start", "encode_step", "decode_draws"] if streams(predictor) else []),
        "max_query_span_h": MAX_SPAN_H,
        "events": event_policies(spec),  # the reader's rules and full FeatureSpec (docs/export.md)
        "decoder": "anchored" if predictor.twin.anchored else "latent",
        # The risk head's validation AUROC and the positives it stands on (None: not measured).
        "risk_validation": risk_validation if predictor.has_risk else None,
    }


def export_twin(twin: PatientTwin, normaliser: dict, spec: FeatureSpec, path: str | Path, *, solver: dict,
                run_id: str | None = None, data_fingerprint: str | None = None,
                risk_validation: dict | None = None) -> Path:
    """Script the twin (the trained module itself) and save it with ``twinode.json``, and the
    file's sha256 in ``<path>.sha256`` beside it."""
    path = Path(path)
    was_training = twin.training
    twin.eval()
    try:
        # A torchdiffeq solver cannot be scripted: export the same weights with the equivalent
        # scriptable solver. Otherwise the trained module itself is scripted.
        if any(isinstance(m, TorchdiffeqSolver) for m in twin.modules()):
            twin = with_scriptable_solvers(twin)
            solver = {**solver, "exported_as": type(twin.solver).__name__}
        predictor = build_predictor(twin, normaliser, spec).cpu()
        try:
            scripted = torch.jit.script(predictor)
        except Exception as exc:  # scripting errors are long; keep the cause, say what to do
            first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            raise ExportError(f"could not script the twin: {first}. "
                              "Use a scriptable solver (solver=rk4 or solver=dopri5) for export.") from exc
        meta = export_metadata(predictor, spec, normaliser, solver=solver, run_id=run_id, data_fingerprint=data_fingerprint,
                               risk_validation=risk_validation)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf, _extra_files={METADATA_FILE: json.dumps(meta, indent=2)})
        data = buf.getvalue()
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a crash never leaves a half-written twin.pt
        write_sidecar(path, hashlib.sha256(data).hexdigest())
        key = signing_key()
        if key is not None:  # $TWINODE_SIGNING_KEY: sign for offline distribution
            sign_file(path, key)
    finally:
        twin.train(was_training)
    return path


def load_twin(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """Load ``twin.pt`` and its metadata, with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"twin file not found: {path}")
    extra = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:
        raise ExportError(f"{path} is not a loadable TorchScript twin ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                          "re-export it with twinode-export") from exc
    try:
        meta = json.loads(extra[METADATA_FILE])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ExportError(f"{path} has no valid {METADATA_FILE} metadata; re-export it with twinode-export") from exc
    if not isinstance(meta, dict):
        raise ExportError(f"{path}: {METADATA_FILE} is not a JSON object; re-export it with twinode-export")
    return module, meta


def check_metadata(meta, source: str | Path) -> None:
    """The shape of ``twinode.json`` every consumer relies on; an ExportError naming the field."""
    def bad(field: str, expected: str, got) -> ExportError:
        return ExportError(f"{source}: {METADATA_FILE} field {field!r} is {type(got).__name__} {str(got)[:60]!r}, "
                           f"expected {expected}; the file was edited or damaged, re-export it with twinode-export")

    if not isinstance(meta, dict):
        raise bad("(top level)", "a JSON object", meta)
    for key in ("measurements", "interventions", "statics"):
        items = meta.get(key)
        if not isinstance(items, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in items):
            raise bad(key, "a list of {name, unit, ...} objects", items)
        names = [f["name"] for f in items]
        if len(set(names)) != len(names):
            raise bad(key, "distinct names", names)
    if not meta["measurements"]:
        raise bad("measurements", "at least one measurement", meta["measurements"])
    for key, kind, expected in (("normalisation", dict, "an object"), ("methods", list, "a list of method names"),
                                ("weights_sha256", str, "a hex string")):
        if not isinstance(meta.get(key), kind):
            raise bad(key, expected, meta.get(key))


def verify_weights(module: torch.nn.Module, meta: dict, source: str | Path) -> None:
    """Refuse a twin whose weights do not match the sha256 recorded at export (tampered or damaged)."""
    expected = meta.get("weights_sha256")
    if not expected:
        raise ExportError(f"{source}: metadata has no weights_sha256; re-export it with twinode-export")
    got = weights_sha256(module)
    if got != expected:
        raise ExportError(f"{source}: weights sha256 {got[:16]}... does not match the exported {expected[:16]}...; "
                          "the file was modified or damaged, fetch or export it again")


def load_verified_twin(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    """``load_twin`` plus the sha256 check of the weights and the format version."""
    module, meta = load_twin(path)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ExportError(f"{path}: twin format version {version!r}, this twinode reads version {FORMAT_VERSION}; "
                          "re-export it with this twinode-export")
    check_metadata(meta, path)
    verify_weights(module, meta, path)
    return module, meta

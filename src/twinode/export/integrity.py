"""Integrity of ``twin.pt`` that cannot be forged from inside the file.

The ``weights_sha256`` inside ``twinode.json`` covers the weights only and lives in the file it
describes: whoever edits the file can recompute it. It catches accidental damage, nothing
more. The sha256 of the *whole file* is recorded outside it: in a sidecar ``twin.pt.sha256``
written next to the file at export (``sha256sum`` format), printed by ``twinode-export``, set as
the MLflow run tag and the registry model-version tag ``twinode.twin_sha256``. A loader checks
the file against an expected value (``--sha256 HEX``, the registry tag, or the sidecar) before
``torch.jit.load`` runs, and says plainly when only the embedded check was possible.

For files handed on offline, a signature: with ``$TWINODE_SIGNING_KEY`` set, the export also
writes ``twin.pt.hmac`` (HMAC-SHA256 of the file under that key), and every checked load in a
process with the key set requires a valid signature. Whoever can rewrite both the file and
its sidecar cannot forge the signature without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from twinode.errors import ExportError

SIDECAR_SUFFIX = ".sha256"
SIGNATURE_SUFFIX = ".hmac"
KEY_ENV = "TWINODE_SIGNING_KEY"
MIN_KEY_CHARS = 16
TAG = "twinode.twin_sha256"  # MLflow run tag and registry model-version tag: sha256 of the whole twin.pt
_HEX64 = re.compile(r"[0-9a-f]{64}")
EMBEDDED_ONLY = ("only the embedded weights check was possible: it catches accidental damage, not a deliberate edit; "
                 "pass --sha256 HEX (printed by twinode-export, tag twinode.twin_sha256 in the registry) "
                 "or keep twin.pt.sha256 beside the file")


@dataclass(frozen=True)
class Integrity:
    """What a load verified: the file's sha256, and against what (None: nothing outside the file)."""

    sha256: str
    checked_against: str | None = None
    signed: bool = False  # a valid HMAC under $TWINODE_SIGNING_KEY was checked

    @property
    def verified(self) -> bool:
        return self.checked_against is not None or self.signed

    def statement(self) -> str:
        sig = f"; signature valid under ${KEY_ENV}" if self.signed else ""
        if self.checked_against is not None:
            return f"integrity: sha256 {self.sha256} matches {self.checked_against}{sig}"
        if self.signed:
            return f"integrity: sha256 {self.sha256}{sig}"
        return f"integrity: sha256 {self.sha256}; {EMBEDDED_ONLY}"


def file_sha256(path: str | Path) -> str:
    """sha256 of the file's bytes (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def normalise_sha256(value: str, where: str) -> str:
    """``value`` as 64 lower-case hex digits, or an ExportError naming ``where``."""
    text = str(value).strip().lower()
    if not _HEX64.fullmatch(text):
        raise ExportError(f"{where}: expected a sha256 of 64 hex digits, got {str(value)[:80]!r}")
    return text


def write_sidecar(path: str | Path, digest: str | None = None) -> str:
    """Write ``<path>.sha256`` (``HEX  name``, as ``sha256sum`` does) atomically; returns the digest."""
    path = Path(path)
    digest = digest or file_sha256(path)
    side = sidecar_path(path)
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    tmp.write_text(f"{digest}  {path.name}\n")
    tmp.replace(side)
    return digest


def read_sidecar(path: str | Path) -> str | None:
    """The digest in ``<path>.sha256``, None when there is no sidecar; an error when it is malformed."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        first = side.read_text(encoding="ascii", errors="strict")[:512].split()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"{side}: unreadable sha256 sidecar ({type(exc).__name__}); delete it or export again") from None
    if not first:
        raise ExportError(f"{side}: empty sha256 sidecar; delete it or export again")
    return normalise_sha256(first[0], str(side))


def verify_file(path: str | Path, expected: str | None = None, *, source: str = "--sha256",
                use_sidecar: bool = True) -> Integrity:
    """Check the whole file against ``expected`` (from ``source``) or, without one, its sidecar.

    Raises ExportError on a mismatch. Returns what was checked; ``Integrity.verified`` is False
    when no expected value existed outside the file (then only the embedded check remains).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"twin file not found: {path}")
    if expected is not None:
        expected = normalise_sha256(expected, source)
    elif use_sidecar:
        expected = read_sidecar(path)
        source = f"the sidecar {sidecar_path(path).name}"
    actual = file_sha256(path)
    if expected is None:
        return Integrity(actual)
    if actual != expected:
        raise ExportError(f"{path}: sha256 {actual} does not match {expected} from {source}; the file was modified, "
                          "replaced or damaged after export. Fetch or export it again, and take the expected sha256 "
                          "from a channel you trust (the registry tag twinode.twin_sha256 or twinode-export's output)")
    return Integrity(actual, source)


def signing_key() -> bytes | None:
    """The key in ``$TWINODE_SIGNING_KEY`` (None when unset); a too short key is an error."""
    key = os.environ.get(KEY_ENV, "")
    if not key:
        return None
    if len(key) < MIN_KEY_CHARS:
        raise ExportError(f"${KEY_ENV} holds {len(key)} characters; a signing key needs at least {MIN_KEY_CHARS} "
                          "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return key.encode()


def signature_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


def _hmac(path: Path, key: bytes) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            mac.update(block)
    return mac.hexdigest()


def sign_file(path: str | Path, key: bytes) -> Path:
    """Write ``<path>.hmac`` (``hmac-sha256 HEX``) atomically; returns its path."""
    path = Path(path)
    side = signature_path(path)
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    tmp.write_text(f"hmac-sha256 {_hmac(path, key)}\n")
    tmp.replace(side)
    return side


def verify_signature(path: str | Path, key: bytes) -> None:
    """Refuse ``path`` unless ``<path>.hmac`` holds its HMAC-SHA256 under ``key``."""
    path = Path(path)
    side = signature_path(path)
    if not side.is_file():
        raise ExportError(f"{path}: no signature {side.name} beside it, and ${KEY_ENV} is set, so one is required; "
                          "get the signed file, or unset the variable to load unsigned files")
    parts = side.read_text(encoding="ascii", errors="replace")[:512].split()
    if len(parts) != 2 or parts[0] != "hmac-sha256":
        raise ExportError(f"{side}: not a twinode signature (expected 'hmac-sha256 HEX')")
    if not hmac.compare_digest(parts[1].lower(), _hmac(path, key)):
        raise ExportError(f"{path}: the signature in {side.name} does not match under ${KEY_ENV}: the file was "
                          "modified after signing, or signed with another key")


def load_checked_twin(path: str | Path, sha256: str | None = None, *, source: str = "--sha256"):
    """``(module, meta, Integrity)``: the whole-file check (``sha256`` or the sidecar) and, with
    ``$TWINODE_SIGNING_KEY`` set, the signature first; then ``load_verified_twin`` (format
    version, metadata shape and the embedded, accidental-damage weights check)."""
    from twinode.export.torchscript import load_verified_twin

    integrity = verify_file(path, sha256, source=source)  # before torch.jit.load reads a byte of it
    key = signing_key()
    if key is not None:
        verify_signature(path, key)
        integrity = Integrity(integrity.sha256, integrity.checked_against, signed=True)
    module, meta = load_verified_twin(path)
    return module, meta, integrity


def open_twin(spec: str | Path, tmp: str | Path, *, sha256: str | None = None, tracking_uri: str | None = None):
    """``(module, meta, Integrity)`` for a twin file or a registry URI, every check that exists applied.

    ``models:/NAME@ALIAS`` (or ``/VERSION``): downloaded into ``tmp`` and checked against the
    version's ``twinode.twin_sha256`` tag (and ``sha256`` too, when given). A file: checked
    against ``sha256`` (``--sha256``), else its sidecar. Then :func:`load_checked_twin`.
    """
    spec = str(spec)
    if spec.startswith("models:/"):
        from twinode.tracking.registry import fetch_verified_twin

        path, fetched = fetch_verified_twin(spec, tmp, tracking_uri)
        if sha256 is not None:
            return load_checked_twin(path, sha256)
        if fetched.verified:
            return load_checked_twin(path, fetched.sha256, source=fetched.checked_against)
        module, meta, integrity = load_checked_twin(path)
        return module, meta, integrity
    return load_checked_twin(spec, sha256)

"""A twin for the command-line tools: a ``twin.pt`` file or a ``models:/NAME@ALIAS`` registry
URI, with every integrity check that exists (:func:`twinode.export.integrity.open_twin`)."""

from __future__ import annotations


def load_checked_model(spec: str, tracking_uri: str | None, tmp: str, sha256: str | None = None):
    """``(twin, meta, Integrity)``; ``tmp`` receives a registry download."""
    from twinode.export.integrity import open_twin
    from twinode.tracking.mlflow_store import default_tracking_uri

    return open_twin(spec, tmp, sha256=sha256, tracking_uri=tracking_uri or default_tracking_uri())


def load_model(spec: str, tracking_uri: str | None, tmp: str):
    """``(twin, meta)`` of :func:`load_checked_model` without the sha256 flag."""
    return load_checked_model(spec, tracking_uri, tmp)[:2]

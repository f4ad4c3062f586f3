"""twinode-export: a checkpoint -> twin.pt, and registry promotion.

    twinode-export ckpt_path=PATH out=twin.pt [run_id=ID] [trust_checkpoint=false]
    twinode-export promote --name NAME --version V [--alias champion] [--tracking-uri URI]

The checkpoint is read with weights_only=True and only twinode's own classes are built from
its config; trust_checkpoint=true lifts both for a checkpoint from a source you trust.
Prints the sha256 of the whole twin.pt (also written to twin.pt.sha256 beside it): give it
to consumers through a channel you trust, they pass it as --sha256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twinode.tracking.mlflow_store import default_tracking_uri
from twinode.cli.exits import exit_on_error
from twinode.errors import ConfigError

EXPORT_KEYS = ("ckpt_path", "out", "run_id", "trust_checkpoint")


def _parse_pairs(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in EXPORT_KEYS:
            raise ConfigError(key if sep else arg, value if sep else None, EXPORT_KEYS, hint="arguments are key=value")
        out[key] = value
    for key in ("ckpt_path", "out"):
        if not out.get(key):
            raise ConfigError(key, None, hint="usage: twinode-export ckpt_path=PATH out=twin.pt")
    return out


def _export(argv: list[str]) -> None:
    from twinode.export.from_checkpoint import export_checkpoint

    from twinode.export.integrity import read_sidecar, signature_path, signing_key

    args = _parse_pairs(argv)
    trust = _flag(args.get("trust_checkpoint", "false"))
    ckpt, out = Path(args["ckpt_path"]), Path(args["out"])
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise ConfigError("out", args["out"], hint="the output would overwrite the checkpoint it is read from; "
                          "name another file, e.g. out=twin.pt")
    if out.is_dir():
        raise ConfigError("out", args["out"], hint="a folder; name the file to write, e.g. out=twin.pt")
    path = export_checkpoint(ckpt, out, run_id=args.get("run_id"), trust=trust)
    print(f"exported twin: {path}")
    print(f"sha256: {read_sidecar(path)}  (also in {path.name}.sha256; consumers check it with --sha256)")
    if signature_path(path).is_file() and signing_key() is not None:
        print(f"signed: {signature_path(path)} (HMAC-SHA256 under $TWINODE_SIGNING_KEY)")


def _flag(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no", ""):
        return False
    raise ConfigError("trust_checkpoint", value, ("true", "false"))


def _promote(argv: list[str]) -> None:
    from twinode.tracking.registry import CHAMPION, promote

    p = argparse.ArgumentParser(prog="twinode-export promote", description="Point an alias (default champion) at a model version.")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--version", required=True, help="model version to promote")
    p.add_argument("--alias", default=CHAMPION)
    p.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db")
    a = p.parse_args(argv)
    uri = a.tracking_uri or default_tracking_uri()
    previous = promote(a.name, a.version, tracking_uri=uri, alias=a.alias)
    print(f"{a.name}@{a.alias} -> version {a.version}" + (f" (was {previous})" if previous else ""))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        sys.exit(0 if argv else 2)
    if argv[0] == "promote":
        exit_on_error(_promote, argv[1:])
    else:
        exit_on_error(_export, argv)


if __name__ == "__main__":
    main()

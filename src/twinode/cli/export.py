"""twinode-export: a checkpoint -> twin.pt, and registry promotion.

    twinode-export --checkpoint PATH --out twin.pt [--run-id ID] [--trust-checkpoint]
    twinode-export promote --name NAME --version V [--alias champion] [--tracking-uri URI]

The checkpoint is read with weights_only=True and only twinode's own classes are built from
its config; --trust-checkpoint lifts both for a checkpoint from a source you trust.
Prints the sha256 of the whole twin.pt (also written to twin.pt.sha256 beside it): give it
to consumers through a channel you trust, they pass it as --sha256. The older spelling
``ckpt_path=PATH out=twin.pt [run_id=ID] [trust_checkpoint=true]`` still works.
"""

from __future__ import annotations

import sys
from pathlib import Path

from twinode.apps import command_line
from twinode.errors import ConfigError

EXPORT_EXAMPLE = """twinode-export --checkpoint outputs/train/runs/<time>/checkpoints/last.ckpt --out twin.pt
twinode-export promote --name twinode-synthetic_icu --version 1        # registry alias champion"""
PROMOTE_EXAMPLE = """twinode-export promote --name twinode-synthetic_icu --version 1 --tracking-uri sqlite:///mlflow.db"""

# The key=value spelling of earlier releases -> the flag it now is.
LEGACY_KEYS = {"ckpt_path": "--checkpoint", "out": "--out", "run_id": "--run-id", "trust_checkpoint": "--trust-checkpoint"}


def build_parser():
    p = command_line.parser("twinode-export", __doc__, EXPORT_EXAMPLE)
    p.add_argument("--checkpoint", default=None, help="Lightning .ckpt written by twinode-train (required)")
    p.add_argument("--out", default=None, help="the twin file to write, e.g. twin.pt (required)")
    p.add_argument("--run-id", default=None, metavar="RUN", help="the MLflow run id to record in the twin's metadata")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a checkpoint that holds more than tensors (only from a source you trust)")
    return p


def promote_parser():
    from twinode.tracking.registry import CHAMPION

    p = command_line.parser("twinode-export promote", "Point an alias (default champion) at a model version.", PROMOTE_EXAMPLE)
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--version", required=True, help="model version to promote")
    p.add_argument("--alias", default=CHAMPION, help=f"the alias to move (default {CHAMPION})")
    command_line.add_tracking_uri(p, "of the registry")
    return p


def legacy_argv(argv: list[str]) -> list[str]:
    """``key=value`` arguments of earlier releases as flags (with a deprecation warning); others unchanged."""
    out, used = [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if arg.startswith("-") or not sep:
            out.append(arg)
            continue
        if key not in LEGACY_KEYS:
            raise ConfigError(key, value, tuple(LEGACY_KEYS), hint="use the flags of twinode-export --help")
        used.append(key)
        if key == "trust_checkpoint":
            if _flag(value):
                out.append("--trust-checkpoint")
        else:
            out += [LEGACY_KEYS[key], value]
    if used:
        print(f"warning: key=value arguments are deprecated; use {' '.join(LEGACY_KEYS[k] for k in used)}", file=sys.stderr)
    return out


def _flag(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes"):
        return True
    if low in ("0", "false", "no", ""):
        return False
    raise ConfigError("trust_checkpoint", value, ("true", "false"))


def _export(a) -> int:
    from twinode.export.from_checkpoint import export_checkpoint
    from twinode.export.integrity import read_sidecar, signature_path, signing_key

    ckpt, out = Path(a.checkpoint), Path(a.out)
    if out.exists() and ckpt.exists() and out.resolve() == ckpt.resolve():
        raise ConfigError("--out", a.out, hint="the output would overwrite the checkpoint it is read from; "
                          "name another file, e.g. --out twin.pt")
    if out.is_dir():
        raise ConfigError("--out", a.out, hint="a folder; name the file to write, e.g. --out twin.pt")
    path = export_checkpoint(ckpt, out, run_id=a.run_id, trust=a.trust_checkpoint)
    print(f"exported twin: {path}")
    print(f"sha256: {read_sidecar(path)}  (also in {path.name}.sha256; consumers check it with --sha256)")
    if signature_path(path).is_file() and signing_key() is not None:
        print(f"signed: {signature_path(path)} (HMAC-SHA256 under $TWINODE_SIGNING_KEY)")
    return 0


def _promote(a) -> int:
    from twinode.tracking.mlflow_store import default_tracking_uri
    from twinode.tracking.registry import promote

    previous = promote(a.name, a.version, tracking_uri=a.tracking_uri or default_tracking_uri(), alias=a.alias)
    print(f"{a.name}@{a.alias} -> version {a.version}" + (f" (was {previous})" if previous else ""))
    return 0


def _export_args(argv: list[str]):
    p = build_parser()
    a = command_line.parse(p, argv)
    missing = [flag for flag, v in (("--checkpoint", a.checkpoint), ("--out", a.out)) if not v]
    if missing:
        p.error(f"the following arguments are required: {', '.join(missing)}")
    return a


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["promote"]:
        command_line.run(promote_parser(), _promote, argv[1:])
    a = command_line.exit_on_error(lambda: _export_args(legacy_argv(argv)))
    command_line.run_and_exit(_export, a)


if __name__ == "__main__":
    main()

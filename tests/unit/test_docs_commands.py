"""Every twinode command written in README.md and docs/*.md parses as the CLI reads it today:
argparse commands through their own parser, twinode-train's overrides through Hydra's compose.
A renamed flag or config key fails here, naming the file and line."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ARGPARSE = {"twinode-eval": "eval", "twinode-export": "export", "twinode-predict": "predict", "twinode-data": "data",
            "twinode-monitor": "monitor", "twinode-plan": "plan", "twinode-info": "info"}
# A template or a synopsis (<path>, ..., {a,b}, [--optional]) is for the reader to fill in.
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\{[^}]*\}|\s\[-")


def documented_commands() -> list[tuple[str, int, list[str]]]:
    """``(file, line, argv)`` of each twinode-* command in the docs' shell blocks."""
    found = []
    for path in DOCS:
        in_block, joined, start = False, "", 0
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_block = line.strip()[3:].strip() in ("bash", "sh", "shell", "console") and not in_block
                joined = ""
                continue
            if not in_block:
                continue
            if not joined:
                start = n
            joined += line.rstrip("\\").strip() + " "
            if line.rstrip().endswith("\\"):
                continue
            text, joined = joined, ""
            if PLACEHOLDER.search(text):
                continue
            for part in re.split(r"&&|\|\||;|\|", text):
                try:
                    words = shlex.split(part, comments=True)
                except ValueError:
                    continue
                while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                    words = words[1:]  # VAR=value before the command
                if words and Path(words[0]).name.startswith("twinode-"):
                    found.append((f"{path.relative_to(ROOT)}:{start}", start, [Path(words[0]).name] + words[1:]))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_every_command():
    shown = {argv[0] for _, _, argv in COMMANDS}
    assert {"twinode-train", "twinode-eval", "twinode-export", "twinode-predict", "twinode-data"} <= shown


@pytest.mark.parametrize("where,line,argv", [c for c in COMMANDS if c[2][0] in ARGPARSE], ids=lambda v: str(v)[:60])
def test_documented_argparse_command_parses(where, line, argv):
    module = importlib.import_module(f"twinode.cli.{ARGPARSE[argv[0]]}")
    parser, args = module.build_parser(), argv[1:]
    if argv[0] == "twinode-export" and args[:1] == ["promote"]:
        parser, args = module.promote_parser(), args[1:]
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help exits 0
            pytest.fail(f"{where}: `{' '.join(argv)}` does not parse (exit {exc.code})")


def test_documented_train_overrides_compose():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from twinode.config_dir import config_dir

    failures = []
    for where, _, argv in (c for c in COMMANDS if c[2][0] == "twinode-train"):
        # Hydra's own settings (hydra.*, hydra/launcher=...) are not part of the composed job config.
        overrides = [a for a in argv[1:] if "=" in a and not a.startswith(("-", "hydra", "+hydra"))]
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            try:
                compose("train", overrides=overrides)
            except Exception as exc:  # noqa: BLE001 - report every broken line at once
                failures.append(f"{where}: {' '.join(argv)}\n    {type(exc).__name__}: {str(exc).splitlines()[0]}")
    assert not failures, "\n".join(failures)

"""One CLI style: the import rules, every --help ending with an example, and one error line
with exit 2 for bad input, through the shared runner (twinode.apps.command_line)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from twinode.apps import command_line
from twinode.errors import DataError

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "src" / "twinode" / "cli"
SCRIPTS = {name: target for name, target in
           tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"].items() if name.startswith("twinode-")}


def _imports(path: Path) -> set[str]:
    """Every module a file imports (``from twinode.cli import x`` counts as ``twinode.cli.x``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: resolved against twinode.cli
            found.add("twinode.cli." + (node.module or ""))
            found |= {f"twinode.cli.{a.name}" for a in node.names}
    return found


def test_no_cli_module_imports_another_cli_module():
    modules = {p.stem for p in CLI.glob("*.py") if p.stem != "__init__"}
    assert {"predict", "plan", "export"} <= modules
    offenders = {}
    for path in CLI.glob("*.py"):
        bad = {m for m in _imports(path) if m.startswith("twinode.cli.") and m.split(".")[2] in modules}
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}, f"CLI modules import other CLI modules (move shared code to twinode.apps): {offenders}"


def test_no_script_imports_a_cli_module():
    scripts = list((REPO / "scripts").rglob("*.py"))
    assert scripts, "scripts/ holds Python files"
    offenders = {p.name: sorted(m for m in _imports(p) if m == "twinode.cli" or m.startswith("twinode.cli."))
                 for p in scripts}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_check_sees_both_spellings(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from twinode.cli import plan\nimport twinode.cli.predict\nfrom . import export\n")
    assert {"twinode.cli.plan", "twinode.cli.predict", "twinode.cli.export"} <= _imports(f)


def test_every_console_script_is_listed_and_every_argparse_one_uses_the_runner():
    assert set(SCRIPTS) == {"twinode-train", "twinode-eval", "twinode-export", "twinode-predict", "twinode-data",
                            "twinode-monitor", "twinode-plan", "twinode-info"}
    for name, target in SCRIPTS.items():
        module = target.split(":")[0]
        assert "twinode.apps.command_line" in _imports(CLI / f"{module.rsplit('.', 1)[1]}.py"), name


@pytest.mark.parametrize("name", sorted(n for n in SCRIPTS if n != "twinode-train"))
def test_help_ends_with_an_example(name, capsys):
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    example = out.rsplit("example:\n", 1)
    assert len(example) == 2, out[-400:]
    assert example[1].strip().startswith(name), example[1]
    assert "--model" not in out  # the deprecated spelling stays hidden


def test_train_help_ends_with_an_example():
    out = subprocess.run([sys.executable, "-m", "twinode.cli.train", "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    tail = out.stdout.rstrip().rsplit("example:\n", 1)
    assert len(tail) == 2 and tail[1].strip().startswith("twinode-train ")


def test_subcommand_help_ends_with_an_example(capsys):
    from twinode.cli import data, export

    for main, argv in ((data.main, ["validate", "--help"]), (data.main, ["simulate", "glucose", "--help"]),
                       (data.main, ["import", "physionet2012", "--help"]), (export.main, ["promote", "--help"])):
        with pytest.raises(SystemExit) as e:
            main(argv)
        out = capsys.readouterr().out
        assert e.value.code == 0 and "example:\n  twinode-" in out, argv


def _raise(exc):
    def body(_args):
        raise exc
    return body


def _jit_error() -> Exception:
    fn = torch.jit.script(_refuses)
    try:
        fn(torch.zeros(2))
    except torch.jit.Error as exc:
        return exc
    raise AssertionError("the scripted function did not raise")


def _refuses(x: torch.Tensor) -> torch.Tensor:
    if x.shape[0] != 3:
        raise ValueError("values must have 3 channels, got " + str(x.shape[0]))
    return x


@pytest.mark.parametrize("exc, expected", [
    (DataError("bad row", file="h.csv", row=3), "error: bad row [file=h.csv, row=3]"),
    (FileNotFoundError(2, "No such file or directory", "missing.csv"), "error: cannot use missing.csv: No such file or directory"),
    ("jit", "error: the twin refused the request: builtins.ValueError: values must have 3 channels, got 2"),
])
def test_the_runner_ends_bad_input_with_one_error_line_and_exit_2(exc, expected, capsys):
    exc = _jit_error() if exc == "jit" else exc
    with pytest.raises(SystemExit) as e:
        command_line.run_and_exit(_raise(exc), None)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.strip() == expected


def test_the_runner_keeps_the_traceback_of_a_bug():
    with pytest.raises(ZeroDivisionError):
        command_line.run_and_exit(_raise(ZeroDivisionError("a bug")), None)


def test_usage_errors_are_one_line_naming_the_command(capsys):
    from twinode.cli import predict

    with pytest.raises(SystemExit) as e:
        predict.main(["--history", "h.csv", "--horizon", "6", "--out", "f.parquet"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: twinode-predict: the following arguments are required: --twin")


def test_the_deprecated_spelling_still_works_and_says_so(capsys):
    p = command_line.parser("demo", "Demo.", "demo --twin t.pt")
    command_line.add_twin(p)
    a = command_line.parse(p, ["--model", "t.pt"])
    assert a.twin == "t.pt"
    assert "warning: --model is deprecated; use --twin" in capsys.readouterr().err
    assert command_line.parse(p, ["--twin", "u.pt"]).twin == "u.pt"


def test_exit_code_runs_a_command_in_process():
    from twinode.cli import info

    assert command_line.exit_code(info.main, ["--help"]) == 0
    assert command_line.exit_code(info.main, ["--twin", "/nonexistent/twin.pt"]) == 2

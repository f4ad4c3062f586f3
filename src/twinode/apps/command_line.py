"""The one way every twinode command line starts and ends.

* :func:`parser` builds an argparse parser whose ``--help`` ends with an example and whose
  usage errors are one ``error: ...`` line and exit 2.
* The shared flag vocabulary: ``--twin`` (a twin.pt or ``models:/NAME@ALIAS``), ``--checkpoint``
  (a Lightning checkpoint), ``--sha256``, ``--out``, ``--tracking-uri``, ``--run-id``
  (:func:`add_outputs`: ``--out`` and ``--plot`` with the run the plot is logged into);
  :func:`deprecated_alias` keeps an old spelling working (hidden from ``--help``, with a warning).
* :func:`run` / :func:`exit_on_error` run a command body: its return code on success; for bad
  input (a TwinodeError, a TorchScript twin refusing its arguments, a file that cannot be read)
  one ``error: ...`` line on stderr and exit 2, never a traceback.

Every module under ``twinode.cli`` imports this one and no CLI module.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, NoReturn, Sequence

from twinode.errors import TwinodeError

BAD_INPUT_EXIT = 2


class Parser(argparse.ArgumentParser):
    """argparse with twinode's ending: a usage error is one ``error:`` line and exit 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(BAD_INPUT_EXIT)


def parser(prog: str, doc: str | None, example: str, **kwargs: Any) -> Parser:
    """A parser whose description is the first paragraph of ``doc`` and whose help ends with ``example``."""
    description = (doc or "").strip().split("\n\n")[0]
    return Parser(prog=prog, description=description, epilog=epilog(example),
                  formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def epilog(example: str) -> str:
    lines = [ln for ln in example.strip("\n").splitlines()]
    return "example:\n" + "\n".join(f"  {ln}" for ln in lines)


class _Deprecated(argparse.Action):
    """Stores into the new option's dest and says once that the spelling is deprecated."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def deprecated_alias(p: argparse.ArgumentParser | Any, old: str, new: str, dest: str, flag: bool = False,
                     **kwargs: Any) -> None:
    """``old`` keeps working as ``new`` (same dest), hidden from --help, with a warning when used."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                   **({"nargs": 0} if flag else {}), **kwargs)


def add_twin(p: argparse.ArgumentParser, required: bool = True, help: str | None = None) -> None:
    """``--twin`` (old spelling ``--model``): a twin.pt file or a registry URI."""
    p.add_argument("--twin", default=None, metavar="TWIN",
                   help=help or "twin.pt, or models:/NAME@ALIAS (or models:/NAME/VERSION)" + (" (required)" if required else ""))
    deprecated_alias(p, "--model", "--twin", "twin")
    if required:
        p.set_defaults(_required_twin=True)


def add_sha256(p: argparse.ArgumentParser, what: str = "--twin") -> None:
    p.add_argument("--sha256", default=None, metavar="HEX",
                   help=f"expected sha256 of the whole {what} file (printed by twinode-export; registry tag "
                   "twinode.twin_sha256); default: the sidecar twin.pt.sha256, or the registry tag for models:/")


def add_tracking_uri(p: argparse.ArgumentParser, what: str = "for models:/ URIs") -> None:
    p.add_argument("--tracking-uri", default=None, metavar="URI",
                   help=f"MLflow tracking URI {what}; default $MLFLOW_TRACKING_URI or sqlite:///./mlflow.db")


def add_run_id(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--run-id", default=None, metavar="RUN", help=what)


def add_outputs(p: argparse.ArgumentParser, out: str, plot: str) -> None:
    """``--out`` (``out``: what it writes) and ``--plot`` (``plot``: the figure), and
    ``--tracking-uri``/``--run-id`` to log that figure into an existing MLflow run
    (:func:`twinode.apps.plots.log_plot`)."""
    p.add_argument("--out", default=None, help=out)
    p.add_argument("--plot", default=None, help=plot)
    add_tracking_uri(p, "for models:/ URIs and --run-id")
    add_run_id(p, "log the plot into this MLflow run")


def parse(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) and enforce the options added as required above."""
    a = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(a, "_required_twin", False) and a.twin is None:
        p.error("the following arguments are required: --twin")
    return a


def error_line(exc: BaseException) -> str | None:
    """The one-line message for bad input, or None for an error that is a bug (it keeps its traceback)."""
    if isinstance(exc, TwinodeError):
        return str(exc)
    torch = sys.modules.get("torch")
    jit_error = getattr(getattr(torch, "jit", None), "Error", None)
    if jit_error is not None and isinstance(exc, jit_error):  # the twin's own argument checks, without TorchScript's trace
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        return f"the twin refused the request: {lines[-1] if lines else type(exc).__name__}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot use {exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not a text file in UTF-8: {exc}"
    return None


def exit_on_error(body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)``; for bad input one ``error: ...`` line and exit 2 (a TwinodeError: its exit code)."""
    try:
        return body(*args)
    except Exception as exc:  # noqa: BLE001 -- anything else is re-raised below
        line = error_line(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", BAD_INPUT_EXIT) if isinstance(exc, TwinodeError) else BAD_INPUT_EXIT)


def run(p: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None],
        argv: Sequence[str] | None = None) -> NoReturn:
    """Parse ``argv`` with ``p``, run ``body(args)`` and exit with its code (0 for None)."""
    args = parse(p, argv)
    sys.exit(exit_on_error(body, args) or 0)


def run_and_exit(body: Callable[[Any], int | None], args: Any) -> NoReturn:
    """``body(args)`` for arguments parsed elsewhere; exits with its code."""
    sys.exit(exit_on_error(body, args) or 0)


def exit_code(main: Callable[[Sequence[str]], Any], argv: Sequence[str]) -> int:
    """Run a command's ``main(argv)`` in this process and return its exit code (0, or what it exited with)."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else BAD_INPUT_EXIT)
    return 0

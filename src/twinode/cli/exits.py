"""Run a CLI body: its return code on success, one ``error: ...`` line and the error's
exit code for a TwinodeError (never a traceback for bad input)."""

from __future__ import annotations

import sys
from typing import Any, Callable

from twinode.errors import TwinodeError


def exit_on_error(body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)``; on a TwinodeError one ``error: ...`` line and its exit code."""
    try:
        return body(*args)
    except TwinodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def run_and_exit(body: Callable[[Any], int], args: Any) -> None:
    sys.exit(exit_on_error(body, args))

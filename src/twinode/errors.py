"""Errors that say what was expected, what came, and how to fix it.

Each carries the location of the problem (file, subject, code, row, config key) so the
CLI can print one clear line and exit non-zero instead of a traceback.
"""

from __future__ import annotations


class TwinodeError(Exception):
    """Base class: a user-facing error with a one-line message."""

    exit_code = 2


class DataError(TwinodeError):
    """Input data does not satisfy the data contract."""

    def __init__(self, message: str, *, file=None, subject=None, code=None, row=None, hint=None):
        where = [f"{k}={v}" for k, v in (("file", file), ("subject", subject), ("code", code), ("row", row)) if v is not None]
        text = message
        if where:
            text += f" [{', '.join(where)}]"
        if hint:
            text += f". {hint}"
        super().__init__(text)
        self.file, self.subject, self.code, self.row = file, subject, code, row


class ConfigError(TwinodeError):
    """A configuration value is missing or not one of the allowed values."""

    def __init__(self, key: str, got, allowed=None, hint: str | None = None):
        text = f"config key '{key}' got {got!r}"
        if allowed is not None:
            text += f"; allowed: {', '.join(map(str, allowed))}"
        if hint:
            text += f". {hint}"
        super().__init__(text)
        self.key, self.got, self.allowed = key, got, allowed


class ExportError(TwinodeError):
    """A model could not be exported, or an exported artifact is invalid."""


class SolverError(TwinodeError):
    """The ODE solve produced non-finite values or failed to converge."""

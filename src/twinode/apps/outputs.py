"""Output paths of a command, checked before any work: a known format, never an input, never twice.

    check_outputs({"--out": (a.out, (".parquet", ".csv")), "--plot": (a.plot, PLOT_SUFFIXES)},
                  inputs={"--history": a.history, "--plan": a.plan})

Raises a DataError naming the option, so a CLI prints one ``error:`` line and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from twinode.errors import DataError

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
TABLE_SUFFIXES = (".parquet", ".csv")


def _paths(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value if v is not None]


def check_outputs(outputs: dict[str, tuple[str | Path | None, Iterable[str] | None]], inputs: dict[str, object]) -> None:
    """``outputs``: option -> (path or None, allowed suffixes or None for any); ``inputs``: option -> path(s) read."""
    read = {Path(p).resolve(): opt for opt, v in inputs.items() for p in _paths(v) if not p.startswith("models:/")}
    seen: dict[Path, str] = {}
    for opt, (path, suffixes) in outputs.items():
        if path is None:
            continue
        p = Path(path)
        r = p.resolve()
        if r in read:
            raise DataError(f"{opt} {path} is also the input {read[r]}; writing it would destroy that input",
                            hint="name another output file")
        if suffixes is not None and p.suffix.lower() not in tuple(suffixes):
            raise DataError(f"{opt} {path}: unknown output format {p.suffix or '(no suffix)'!r}; expected one of "
                            f"{', '.join(suffixes)}", hint="nothing was written")
        if p.is_dir():
            raise DataError(f"{opt} {path} is a folder; name the file to write", hint="nothing was written")
        if r in seen:
            raise DataError(f"{opt} and {seen[r]} name the same file {path}", hint="give each output its own file")
        seen[r] = opt

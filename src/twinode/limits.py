"""Resource limits at the edges: bounded YAML/JSON parsing and size caps checked before work.

A file or argument from outside must not make twinode allocate without bound. YAML aliases
are expanded by whoever walks the parsed structure (a 372-byte "alias bomb" is a billion
values to a printer), so :func:`load_document` counts every value *as expanded* and refuses a
document past :data:`MAX_NODES`, deeper than :data:`MAX_DEPTH` or larger than
:data:`MAX_DOCUMENT_BYTES`. :func:`check_forecast` bounds query points, samples and the memory
a forecast would take before anything is allocated. Every refusal is a DataError that names
the file or argument, the limit, and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from twinode.errors import DataError

MAX_DOCUMENT_BYTES = 8 * 1024 * 1024  # a plan, a candidates file, a FeatureSpec, scenarios
MAX_NODES = 200_000  # values in one document, YAML aliases counted as expanded
MAX_DEPTH = 64  # nesting of lists and mappings
MAX_QUERY_POINTS = 100_000  # forecast time points per plan (--horizon / --step)
MAX_SAMPLES = 10_000  # sampled trajectories (--samples)
MAX_HISTORY_POINTS = 200_000  # time points of one subject's history (a year of minute vitals is ~500k)
MAX_HISTORY_DOSES = 100_000  # dose rows of one subject's history
MAX_FORECAST_BYTES = 2 * 1024**3  # estimated memory of one plan's sampled forecast
LATENT_ALLOWANCE = 64  # per-sample floats per query point beyond the measurements (latent path, solver stages)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts composed nodes, aliases at their expanded size, and the depth."""

    def __init__(self, stream, max_nodes: int, max_depth: int):
        super().__init__(stream)
        self.max_nodes, self.max_depth = max_nodes, max_depth
        self.n_nodes = self.depth = 0
        self.sizes: dict[int, int] = {}  # id(node) -> expanded size of its subtree

    def _charge(self, n: int, event) -> None:
        self.n_nodes += n
        if self.n_nodes > self.max_nodes:
            line = event.start_mark.line + 1 if event is not None and event.start_mark else "?"
            raise _Refused(f"more than {self.max_nodes} values once YAML aliases (*name) are expanded, at line {line}",
                           "a plan or spec this large is almost surely an alias bomb; write the values out, or split "
                           "the file")

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._charge(self.sizes.get(id(node), 1), event)
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > self.max_depth:
            event = self.peek_event()
            raise _Refused(f"nested deeper than {self.max_depth} levels, at line {event.start_mark.line + 1}",
                           "plans and specs are a few levels deep")
        start = self.n_nodes
        self._charge(1, self.peek_event())
        node = super().compose_node(parent, index)
        self.depth -= 1
        self.sizes[id(node)] = self.n_nodes - start
        return node


class _Refused(Exception):
    def __init__(self, what: str, hint: str):
        super().__init__(what)
        self.what, self.hint = what, hint


def load_yaml(text: str, *, file: str | None = None, what: str = "document",
              max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """``yaml.safe_load`` with the limits of this module (DataError naming ``file``)."""
    _check_size(text, file, what)
    loader = _BoundedLoader(text, max_nodes, max_depth)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise DataError(f"{what} refused: {exc.what}", file=file, hint=exc.hint) from None
    except yaml.YAMLError as exc:
        raise DataError(f"{what} is not valid YAML: {_first_line(exc)}", file=file) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # e.g. an integer with 10^5 digits
        raise DataError(f"{what} is not valid YAML: {type(exc).__name__}: {_first_line(exc)}", file=file) from None
    finally:
        loader.dispose()


def load_json(text: str, *, file: str | None = None, what: str = "document", max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` with the size and depth limits of this module (DataError naming ``file``)."""
    _check_size(text, file, what)
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:  # nesting depth before parsing: json.loads recurses once per level
        if in_string:
            escaped = not escaped and ch == "\\"
            if ch == '"' and not escaped:
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                raise DataError(f"{what} refused: nested deeper than {max_depth} levels", file=file,
                                hint="plans and specs are a few levels deep")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON: {_first_line(exc)}", file=file) from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{what} is not valid JSON: {type(exc).__name__}: {_first_line(exc)}", file=file) from None


def load_document(text: str, kind: str, *, file: str | None = None, what: str = "document") -> Any:
    """``kind`` "JSON" or "YAML": the parsed text, within the limits."""
    return load_json(text, file=file, what=what) if kind.upper() == "JSON" else load_yaml(text, file=file, what=what)


def load_file(path: str | Path, what: str = "document") -> Any:
    """A ``.json`` file as JSON, any other as YAML; its size is checked before it is read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found", file=str(path))
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        raise DataError(f"{what} refused: {size} bytes, the limit is {MAX_DOCUMENT_BYTES}", file=str(path),
                        hint="plans and specs are small; is this the right file?")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what} is not UTF-8 text", file=str(path)) from None
    return load_document(text, "JSON" if path.suffix.lower() == ".json" else "YAML", file=str(path), what=what)


def check_count(what: str, n: int, limit: int, *, file: str | None = None, hint: str | None = None) -> None:
    """Refuse ``n`` items of ``what`` beyond ``limit``."""
    if n > limit:
        raise DataError(f"{what}: {n} exceeds the limit of {limit}", file=file, hint=hint)


def check_forecast(n_query: int, samples: int, n_measurements: int, *, step: float | None = None) -> int:
    """Refuse a forecast too large to allocate, before anything is: query points per plan, sampled
    trajectories, and their estimated memory. Returns the estimate in bytes."""
    check_count("forecast points (--horizon / --step)", n_query, MAX_QUERY_POINTS,
                hint=f"use a larger --step{f' than {step:g} h' if step else ''} or a shorter --horizon")
    check_count("--samples", samples, MAX_SAMPLES, hint="a few hundred samples give stable 5-95% intervals")
    need = 4 * samples * n_query * (n_measurements + LATENT_ALLOWANCE) * 2  # samples and their quantile copy
    if need > MAX_FORECAST_BYTES:
        raise DataError(f"the forecast would need about {need / 1024**3:.1f} GiB ({samples} samples x {n_query} points); "
                        f"the limit is {MAX_FORECAST_BYTES / 1024**3:.0f} GiB",
                        hint="lower --samples, or use a larger --step")
    return need


def _check_size(text: str, file: str | None, what: str) -> None:
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DataError(f"{what} refused: {len(text)} characters, the limit is {MAX_DOCUMENT_BYTES}", file=file,
                        hint="plans and specs are small; is this the right file?")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]

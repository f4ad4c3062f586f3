"""Read one patient's events as they arrive: newline-delimited JSON or the long CSV format.

JSON lines: ``{"time": 6.25, "code": "CGM//mg/dL", "value": 143.0}`` (``name`` may replace
``code``; ``numeric_value`` may replace ``value``; ``duration_h`` gives an infusion's length,
omitted = open until the next start on that channel). Long format: a header line
``subject_id,time,code,numeric_value[,duration_h]`` then one row per event, times in hours
since the window start.

Each event is read by the rules training used (:mod:`twinode.data.rules`, with the FeatureSpec
from the twin's metadata): codes resolve as in training; values outside ``valid_range`` are
dropped and counted (or refused); a missing or non-finite value is counted (``missing_value``,
``non_finite_value``); an infusion's ``end_code`` ends the open infusions on its
channel, as pairing does in training; an exact duplicate of an event at the same time is dropped
and counted; a bolus's duration is ignored (counted); statics after the window start are
dropped and counted; a negative dose is an error. Same-time measurements are combined by
:class:`~twinode.apps.online.OnlineTwin` with the feature's duplicate rule, and doses become
contract rows (rates to totals) there. A malformed line stops the stream with a DataError
naming the line.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Iterator

from twinode.data.rules import check_dose_value, check_range, spec_from_meta
from twinode.errors import DataError

LONG_HEADER = ("subject_id", "time", "code", "numeric_value")


@dataclass(frozen=True)
class Event:
    time: float  # hours
    role: str  # measurement | intervention | static | end (an infusion's end code; index = its channel)
    index: int  # channel index within its role
    value: float
    duration_h: float | None  # interventions: None = infusion without a known end / 0 = bolus
    line: int  # 1-based line in the stream
    code: str


def _number(raw, what: str, source: str, line: int, code=None) -> float:
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number, got {raw!r}", file=source, row=line, code=code) from None
    if not math.isfinite(x):
        raise DataError(f"{what} must be finite, got {raw!r}", file=source, row=line, code=code)
    return x


class EventStream:
    """Iterates :class:`Event` s from text lines; checks order (times never go back)."""

    def __init__(self, lines: Iterable[str], meta: dict, source: str = "<stream>", skip_unknown: bool = False):
        self.lines, self.source, self.skip_unknown = lines, source, skip_unknown
        self.spec = spec_from_meta(meta)
        roles = ("measurement", "intervention", "static")
        self.index = {f.name: (f.role, i) for role in roles for i, f in enumerate(self.spec.by_role(role))}
        self.ends = {f.end_code: i for i, f in enumerate(self.spec.interventions) if f.end_code}
        self.known = [f["name"] for f in meta["measurements"] + meta["statics"] + meta["interventions"]]
        self.skipped: dict[str, int] = {}
        self.dropped: Counter = Counter()  # reason -> events not used (or noted), as in training's report
        self._seen: set = set()  # (code, value, duration) at the current time: exact duplicates
        self._header: list[str] | None = None
        self._last_time = -math.inf

    def _fields(self, text: str, line: int) -> dict | None:
        """One line -> a mapping with time, code, value[, duration_h]; None for a header/blank line."""
        s = text.strip()
        if not s:
            return None
        if s.startswith(("{", "[")):
            try:
                d = json.loads(s)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON: {exc.msg} at column {exc.colno}", file=self.source, row=line) from None
            if not isinstance(d, dict):
                raise DataError(f"expected a JSON object, got {type(d).__name__}", file=self.source, row=line)
            code = d.get("code", d.get("name"))
            value = d.get("value", d.get("numeric_value"))  # null: no value (counted as missing_value)
            if "time" not in d or code is None or not ({"value", "numeric_value"} & set(d) or str(code) in self.ends):
                raise DataError(f"a JSON event needs time, code (or name) and value, got keys {sorted(d)}",
                                file=self.source, row=line)
            return {"time": d["time"], "code": str(code), "value": value, "duration_h": d.get("duration_h")}
        cells = next(csv.reader([s]))
        if self._header is None:
            if tuple(c.strip() for c in cells[:4]) != LONG_HEADER:
                raise DataError(f"a long-format stream starts with the header {','.join(LONG_HEADER)}[,duration_h], "
                                f"got {s[:80]!r} (or use JSON lines)", file=self.source, row=line)
            self._header = [c.strip() for c in cells]
            return None
        if len(cells) != len(self._header):
            raise DataError(f"expected {len(self._header)} comma-separated fields ({','.join(self._header)}), got {len(cells)}",
                            file=self.source, row=line)
        d = dict(zip(self._header, cells))
        dur, value = d.get("duration_h"), d["numeric_value"].strip()
        return {"time": d["time"], "code": d["code"], "value": value or None, "duration_h": dur if dur not in (None, "") else None}

    def _advance(self, t: float, where: dict) -> None:
        """Times never go back; a new time starts a new set of exact-duplicate keys."""
        if t < self._last_time:
            raise DataError(f"time {t} h goes back before the previous event ({self._last_time} h); a stream arrives in time order",
                            **where)
        if t > self._last_time:
            self._seen = set()
        self._last_time = t

    def _value(self, raw, where: dict) -> float | None:
        """The event's value; None (counted, as training counts it) when missing or not finite."""
        if raw is None:
            self.dropped["missing_value"] += 1
            return None
        try:
            x = float(raw)
        except (TypeError, ValueError):
            raise DataError(f"value must be a number, got {raw!r}", **where) from None
        if not math.isfinite(x):
            self.dropped["non_finite_value"] += 1
            return None
        return x

    def _skip(self, code: str) -> None:
        self.skipped[code] = self.skipped.get(code, 0) + 1

    def __iter__(self) -> Iterator[Event]:
        ws = self.spec.window_start
        for line, text in enumerate(self.lines, start=1):
            f = self._fields(text, line)
            if f is None:
                continue
            code = f["code"]
            where = dict(file=self.source, row=line, code=code)
            t = _number(f["time"], "time (hours)", self.source, line, code)
            feat = self.spec.resolve(code)
            if feat is None and code in self.ends:  # an infusion's end: closes the open ones on its channel
                self._advance(t, where)
                yield Event(t, "end", self.ends[code], math.nan, None, line, code)
                continue
            if feat is None or feat.role == "outcome":
                if feat is not None or self.skip_unknown or (ws is not None and ws.matches(code)):
                    self._skip(code)
                    continue
                raise DataError(f"unknown code {code!r}; this twin knows {self.known}", **where,
                                hint="pass --skip-unknown-codes to skip (and count) such lines")
            self._advance(t, where)
            v = self._value(f["value"], where)
            if v is None:
                continue
            role, i = self.index[feat.name]
            dur = None
            if role == "intervention" and f["duration_h"] is not None:
                dur = _number(f["duration_h"], "duration_h", self.source, line, code)
                if dur < 0:
                    raise DataError(f"duration_h must be >= 0, got {dur}", **where)
            key = (code, v, dur)  # the raw row, as training's exact-duplicate check sees it
            if key in self._seen:
                self.dropped["duplicate_row"] += 1
                continue
            self._seen.add(key)
            if role == "intervention":
                check_dose_value(v, **where)
                if feat.kind == "bolus":
                    if dur:
                        self.dropped[f"bolus_duration_ignored:{feat.name}"] += 1
                    dur = 0.0
            if not check_range(feat, v, self.dropped, **where):
                continue
            if role == "static" and t > 0:
                self.dropped["static_after_start"] += 1
                continue
            yield Event(t, role, i, v, dur, line, code)


def table_lines(path, meta: dict, *, subject: int | None = None, time_origin=None, window_hours: float | None = None,
                skip_unknown: bool | None = None, command: str = "twinode-monitor"):
    """A recorded stay (a MEDS folder, or a long CSV/parquet with timestamps or hours) as stream
    lines in time order, aligned to its window start as training aligns it.

    Returns the JSON lines and the :class:`~twinode.data.events.AlignedSubject` (what was
    dropped or skipped while reading). Rows without a value are counted as ``missing_value``
    (as in training); statics without a time come first."""
    from twinode.data.events import align_subject

    a = align_subject(path, spec_from_meta(meta), subject=subject, time_origin=time_origin, window_hours=window_hours,
                      skip_unknown=skip_unknown, command=command)
    ev = a.events
    ends = {f.end_code for f in spec_from_meta(meta).interventions if f.end_code}
    no_value = ev["numeric_value"].is_null() | ev["numeric_value"].is_nan()
    usable = ~no_value | ev["code"].is_in(sorted(ends))
    if int((~usable).sum()):
        a.dropped["missing_value"] += int((~usable).sum())
    ev = ev.filter(usable)
    first = min(0.0, float(ev["time"].min())) if ev["time"].drop_nulls().len() else 0.0
    ev = ev.with_columns(ev["time"].fill_null(first)).sort("time", maintain_order=True)
    dur = ev["duration_h"].to_list() if "duration_h" in ev.columns else [None] * ev.height
    lines = [json.dumps({"time": t, "code": c, "value": None if v is None or v != v else float(v),
                         "duration_h": None if d is None or d != d else float(d)})
             for t, c, v, d in zip(ev["time"].to_list(), ev["code"].to_list(), ev["numeric_value"].to_list(), dur)]
    return lines, a

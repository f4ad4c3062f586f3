"""The ``--history`` options of twinode-predict and twinode-plan (and the window options
twinode-monitor shares), and how their outcome is reported."""

from __future__ import annotations

import argparse
import sys


def add_history_args(p: argparse.ArgumentParser) -> None:
    """The history options shared by twinode-predict and twinode-plan."""
    p.add_argument("--history", required=True, help="events: subject_id,time,code,numeric_value[,duration_h] as CSV/parquet "
                   "(time in hours since the window start, or timestamps) or a MEDS dataset folder")
    add_window_args(p, "read")
    p.add_argument("--skip-unknown-codes", action="store_true", default=None,
                   help="skip (and count) codes the twin does not know (the default for timestamped/MEDS events)")


def add_window_args(p: argparse.ArgumentParser, verb: str) -> None:
    """Which subject and which part of its record to ``verb`` (read, replay): ``--subject``,
    ``--time-origin``, ``--window-hours``; shared by twinode-predict, -plan and -monitor."""
    p.add_argument("--subject", type=int, default=None, help=f"the subject to {verb} when the events hold several (MEDS)")
    p.add_argument("--time-origin", default=None, help="window start: an ISO timestamp for timestamped events "
                   "(default: the twin's window_start event, else the subject's first event)")
    p.add_argument("--window-hours", type=float, default=None, help=f"{verb} events up to this many hours after the "
                   "window start (default: the twin's training window)")


def read_history_args(a, meta: dict, command: str):
    """``--history`` and its options -> a History; prints warnings and what was not used."""
    from twinode.export.inputs import read_history

    h = read_history(a.history, meta, skip_unknown=a.skip_unknown_codes, subject=a.subject, time_origin=a.time_origin,
                     window_hours=a.window_hours, command=command)
    for w in h.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return h


def skipped_text(skipped: dict[str, int], what: str = "history rows", most: int = 10) -> str:
    """Rows skipped by code, the most frequent first (MEDS data can hold thousands of codes)."""
    top = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = dict(top[:most])
    more = f" and {len(top) - most} more codes" if len(top) > most else ""
    return f"skipped {sum(skipped.values())} {what} by code: {shown}{more}"


def report_history(h) -> None:
    if h.skipped:
        print(skipped_text(h.skipped), file=sys.stderr)
    if h.dropped:
        print(f"history rows not used or adjusted, by reason: {dict(h.dropped)}", file=sys.stderr)

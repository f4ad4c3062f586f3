"""twinode-monitor: score a patient's measurements as they arrive against the twin's forecast.

    twinode-monitor --twin twin.pt --stream events.jsonl|events.csv|- [--threshold 3] [--out scored.jsonl]
                    [--plot monitor.png [--channel NAME ...]] [--tracking-uri URI --run-id RUN]
    twinode-monitor --twin twin.pt --stream MEDS_DIR|events.parquet --subject ID [--time-origin T]   # replay a stay

Each measurement gets the z-score of its value against the predictive distribution from
the history before it; ``|z| > --threshold`` (for ``--consecutive`` readings) is an alert.
Output: one JSON line per scored measurement on stdout (or --out), a summary on stderr.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

from twinode.apps import command_line
from twinode.apps.history_options import add_window_args, skipped_text
from twinode.errors import DataError


EXAMPLE = """twinode-monitor --twin twin.pt --stream events.jsonl --out scored.jsonl --plot monitor.png --channel HR,MAP
tail -f events.jsonl | twinode-monitor --twin twin.pt --stream -"""


def build_parser():
    p = command_line.parser("twinode-monitor", __doc__, EXAMPLE)
    command_line.add_twin(p)
    command_line.add_sha256(p)
    p.add_argument("--stream", required=True, help="newline-delimited JSON or long CSV events in hours; '-' reads stdin as "
                   "it arrives; a MEDS folder, a parquet file or timestamped CSV is replayed in time order")
    add_window_args(p, "replay")
    p.add_argument("--threshold", type=float, default=3.0, help="alert when |z| exceeds this (default 3)")
    p.add_argument("--direction", choices=["both", "high", "low"], default="both")
    p.add_argument("--consecutive", type=int, default=1, help="readings in a row above threshold before an alert")
    p.add_argument("--warmup", type=int, default=3, help="readings of a channel before it is scored")
    p.add_argument("--samples", type=int, default=32, help="latent draws for the predictive distribution (0: posterior mean)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full-reencode", action="store_true", help="re-encode the whole history per event (for comparison)")
    p.add_argument("--skip-unknown-codes", action="store_true", default=None,
                   help="skip (and count) codes the twin does not know (the default for replayed timestamped/MEDS events)")
    command_line.add_outputs(p, "write scored JSON lines here instead of stdout",
                             "PNG of values, forecast band and alerts, one panel per channel")
    p.add_argument("--channel", action="append", default=None, metavar="NAME",
                   help="--plot these measurements (repeat, or a comma list; default: every channel with scored readings)")
    return p


def _args(argv):
    p = build_parser()
    a = command_line.parse(p, argv)
    if a.channel is not None:
        a.channel = [c.strip() for part in a.channel for c in part.split(",") if c.strip()]
        if not a.channel:
            p.error("--channel needs a measurement name")
        if a.plot is None:
            p.error("--channel chooses what --plot draws; give --plot FILE.png too")
    return a


def plot_channels(meta: dict, scored: list, chosen: list[str] | None) -> list[str]:
    """The measurements ``--plot`` draws: ``--channel``'s (checked against the twin), else every
    measurement with scored readings, in the twin's order."""
    names = [m["name"] for m in meta["measurements"]]
    if chosen:
        unknown = [c for c in chosen if c not in names]
        if unknown:
            raise DataError(f"--channel {', '.join(unknown)}: not a measurement of this twin; it has {names}")
        return list(dict.fromkeys(chosen))
    seen = {s.name for s in scored}
    return [n for n in names if n in seen]


def _is_table(a) -> bool:
    """A recorded table rather than a stream: a folder, parquet, a chosen subject or origin, or CSV with timestamps."""
    path = Path(a.stream)
    if path.is_dir() or path.suffix == ".parquet" or a.subject is not None or a.time_origin is not None:
        return True
    if path.suffix != ".csv" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as fh:
        head, first = fh.readline(), fh.readline()
    cells = dict(zip([c.strip() for c in head.split(",")], first.split(",")))
    try:
        float(cells.get("time", "0"))
    except ValueError:
        return True
    return False


def run(a) -> int:
    from twinode.apps.monitor import AlertRule, Monitor
    from twinode.apps.stream import EventStream
    from twinode.apps.outputs import PLOT_SUFFIXES, check_outputs
    from twinode.apps.twin_files import load_checked_model

    rule = AlertRule(a.threshold, a.direction, a.consecutive, a.warmup)
    check_outputs({"--out": (a.out, None), "--plot": (a.plot, PLOT_SUFFIXES)},
                  {"--stream": None if a.stream == "-" else a.stream, "--twin": a.twin})
    with tempfile.TemporaryDirectory() as tmp:
        twin, meta, integrity = load_checked_model(a.twin, a.tracking_uri, tmp, a.sha256)
    if a.channel:
        plot_channels(meta, [], a.channel)  # an unknown name stops the command before any work
    read = None
    if a.stream == "-":
        lines, source = sys.stdin, "<stdin>"
    elif _is_table(a):
        from twinode.apps.stream import table_lines

        lines, read = table_lines(a.stream, meta, subject=a.subject, time_origin=a.time_origin, window_hours=a.window_hours,
                                  skip_unknown=a.skip_unknown_codes)
        source = a.stream
        for w in read.warnings:
            print(f"warning: {w}", file=sys.stderr)
    else:
        try:
            lines, source = open(a.stream, encoding="utf-8"), a.stream
        except OSError as exc:
            raise DataError(f"cannot read the stream: {exc.strerror}", file=a.stream) from None
    monitor = Monitor(twin, meta, rule, num_samples=a.samples, seed=a.seed, incremental=not a.full_reencode)
    stream = EventStream(lines, meta, source, skip_unknown=bool(a.skip_unknown_codes))
    out = open(a.out, "w") if a.out else sys.stdout
    scored = []
    try:
        for s in monitor.run_stream(stream):
            scored.append(s)
            out.write(json.dumps(s.as_dict()) + "\n")
            out.flush()  # one line per reading, as it arrives
    except torch.jit.Error as exc:
        lines_ = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise DataError(f"the twin refused the history: {lines_[-1] if lines_ else exc}", file=source) from None
    finally:
        if a.out:
            out.close()
    alerts = sum(s.alert for s in scored)
    cost = statistics.median(s.seconds for s in scored) * 1e3 if scored else float("nan")
    mode = "incremental" if monitor.state.incremental else "full re-encode"
    print(integrity.statement(), file=sys.stderr)
    print(f"scored {len(scored)} readings, {alerts} alerts; median {cost:.2f} ms per reading ({mode})", file=sys.stderr)
    skipped = dict(Counter(read.skipped if read else {}) + Counter(stream.skipped))
    dropped = (read.dropped if read else Counter()) + stream.dropped
    if skipped:
        print(skipped_text(skipped, "lines"), file=sys.stderr)
    if dropped:
        print(f"lines not used or adjusted, by reason: {dict(dropped)}", file=sys.stderr)
    if a.plot and scored:
        from twinode.apps.plots import log_plot, plot_monitor

        names = plot_channels(meta, scored, a.channel)
        units = {m["name"]: m.get("unit", "") for m in meta["measurements"]}
        plot_monitor(a.plot, scored, names, units, a.threshold)
        print(f"plot: {a.plot} ({', '.join(names)})", file=sys.stderr)
        log_plot(a.plot, a.tracking_uri, a.run_id)
    return 0


def main(argv: list[str] | None = None) -> None:
    command_line.run_and_exit(run, _args(argv))


if __name__ == "__main__":
    main()

"""``twinode-data``: check a dataset, or import a challenge distribution into MEDS.

    twinode-data validate PATH [--spec NAME|FILE.yaml] [--json]
    twinode-data import physionet2012 --archive set-a.tar.gz --outcomes Outcomes-a.txt --out DIR [--overwrite]
    twinode-data simulate glucose (--scenarios FILE | --patients N --days D --seed S) --out PATH

Exit 0 when the data is usable; otherwise one ``error: ...`` line naming file, subject,
code and row, and the error's exit code.
"""

from __future__ import annotations

import argparse
import json

from twinode.apps import command_line
from twinode.data.spec_files import load_spec  # noqa: F401  (twinode-data validate --spec)

EXAMPLE = """twinode-data validate data/physionet2012_meds --spec physionet2012
twinode-data import physionet2012 --archive set-a.tar.gz --outcomes Outcomes-a.txt --out data/physionet2012_meds
twinode-data simulate glucose --patients 200 --days 1 --seed 0 --out data/glucose"""


def _print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), indent=1, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{len(report.files)} file(s)[/]: {report.subjects} subjects, {report.events} events, times as {report.time_kind}"
                  + (f"; spec [bold]{report.spec}[/]: {report.usable_subjects} usable subjects" if report.spec else ""))
    for note in report.notes:
        console.print(f"note: {note}")
    if report.dropped:
        t = Table("dropped because", "rows", title="Rows not used")
        for reason, n in sorted(report.dropped.items(), key=lambda kv: -kv[1]):
            t.add_row(reason, str(n))
        console.print(t)
    if report.feature_missing:
        t = Table("feature", "subjects never observed", title="Missing rates")
        for name, rate in report.feature_missing.items():
            t.add_row(name, f"{rate:.1%}")
        console.print(t)
    if report.codes is not None:
        t = Table("code", "events", "subjects", "no value", title=f"Codes (top 25 of {report.codes.height})")
        for code, n, subj, miss in report.codes.head(25).iter_rows():
            t.add_row(code, str(n), str(subj), f"{miss:.1%}")
        console.print(t)


def cmd_validate(args) -> int:
    from twinode.data.validate import validate

    spec = load_spec(args.spec) if args.spec else None
    report, _ = validate(args.path, spec)
    _print_report(report, args.json)
    return 0


def cmd_import(args) -> int:
    from twinode.data.importers.physionet2012 import import_physionet2012

    report = import_physionet2012(args.archive, args.outcomes, args.out, overwrite=args.overwrite)
    print(f"imported {report.records} records, {report.events} events into {args.out} in {report.seconds:.1f} s; "
          f"splits {dict(report.splits)}" + (f"; dropped {dict(report.dropped)}" if report.dropped else ""))
    for note in report.notes:
        print(f"note: {note}")
    return 0


def build_parser():
    p = command_line.parser("twinode-data", __doc__, EXAMPLE)
    sub = p.add_subparsers(dest="command", required=True, parser_class=command_line.Parser)
    v = sub.add_parser("validate", help="schema and content checks, with a report", description="Schema and content "
                       "checks of an event table or MEDS dataset, with a report.",
                       epilog=command_line.epilog("twinode-data validate data/physionet2012_meds --spec physionet2012 --json"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("path", help="MEDS dataset folder, or a long .csv/.parquet file")
    v.add_argument("--spec", help="configs/data/<NAME>.yaml (its source.spec) or a FeatureSpec YAML path")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=cmd_validate)
    imp = sub.add_parser("import", help="convert a challenge distribution into a MEDS dataset",
                         epilog=command_line.epilog("twinode-data import physionet2012 --archive set-a.tar.gz "
                                             "--outcomes Outcomes-a.txt --out data/physionet2012_meds"),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    which = imp.add_subparsers(dest="dataset", required=True, parser_class=command_line.Parser)
    pn = which.add_parser("physionet2012", help="PhysioNet/CinC Challenge 2012 (set-a.tar.gz + Outcomes-a.txt)",
                          epilog=command_line.epilog("twinode-data import physionet2012 --archive set-a.tar.gz "
                                              "--outcomes Outcomes-a.txt --out data/physionet2012_meds"),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    pn.add_argument("--archive", required=True)
    pn.add_argument("--outcomes", required=True)
    pn.add_argument("--out", required=True, help="a new folder, or one an earlier import wrote (replaced only when "
                    "the new import is complete)")
    pn.add_argument("--overwrite", action="store_true", help="replace --out even when it holds files twinode did not write")
    pn.set_defaults(func=cmd_import)
    from twinode.data.simulators.glucose_cli import add_parser as add_simulate

    add_simulate(sub)
    example = command_line.epilog("twinode-data simulate glucose --patients 200 --days 1 --seed 0 --out data/glucose\n"
                           "twinode-data simulate glucose --scenarios scenarios.json --out trajectories.parquet")
    sim = sub.choices["simulate"]
    sim.epilog, sim.formatter_class = example, argparse.RawDescriptionHelpFormatter
    for action in sim._actions:
        for child in (action.choices or {}).values() if isinstance(action, argparse._SubParsersAction) else ():
            child.epilog, child.formatter_class = example, argparse.RawDescriptionHelpFormatter
    return p


def _check_simulate_out(args) -> None:
    """``simulate glucose``: the output is checked before minutes of simulation, and a cohort
    folder may only replace an earlier simulated cohort (its files are written in place)."""
    from twinode.apps.outputs import check_outputs
    from twinode.data.importers.output import check_output

    if args.scenarios is not None:  # the format is the simulator's own check
        check_outputs({"--out": (args.out, None)}, {"--scenarios": args.scenarios})
    elif args.patients is not None:
        check_output(args.out, [], files=None)


def _body(args) -> int:
    if args.command == "simulate":
        _check_simulate_out(args)
    return args.func(args)


def main(argv: list[str] | None = None) -> None:
    command_line.run(build_parser(), _body, argv)


if __name__ == "__main__":
    main()

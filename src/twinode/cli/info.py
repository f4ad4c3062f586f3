"""twinode-info: what a twin takes and gives, from its own metadata.

    twinode-info --twin twin.pt|models:/NAME@ALIAS [--sha256 HEX] [--json] [--tracking-uri URI]
    twinode-info twin.pt                      # the same, the twin as the only argument

Prints the measurements (unit, transform, valid range, duplicate rule, codes), the
interventions (kind, what an event's value means and the unit of the contract's ``amount``),
the statics, the outcomes, the dataset, the training run and the reader's policies: the
names and rules a history, a plan or a stream must follow (docs/export.md).
"""

from __future__ import annotations

import json
import sys
import tempfile

from twinode.apps import command_line

EXAMPLE = """twinode-info --twin outputs/train/runs/<time>/twin.pt
twinode-info --twin models:/twinode-synthetic_icu@champion --tracking-uri sqlite:///mlflow.db --json"""


def build_parser():
    p = command_line.parser("twinode-info", __doc__, EXAMPLE)
    command_line.add_twin(p, required=False, help="twin.pt, or models:/NAME@ALIAS (or models:/NAME/VERSION)")
    p.add_argument("twin_arg", nargs="?", default=None, metavar="TWIN", help="the same as --twin")
    command_line.add_sha256(p)
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    command_line.add_tracking_uri(p)
    return p


def _args(argv):
    p = build_parser()
    a = command_line.parse(p, argv)
    if a.twin is not None and a.twin_arg is not None and a.twin != a.twin_arg:
        p.error(f"two twins given: --twin {a.twin} and {a.twin_arg}")
    a.twin = a.twin or a.twin_arg
    if a.twin is None:
        p.error("the following arguments are required: --twin")
    return a


def describe(meta: dict) -> dict:
    """The twin's inputs, outputs and reader policies as plain data."""
    from twinode.data.rules import spec_from_meta

    spec = spec_from_meta(meta)
    code = lambda f: f.code if f.match == "exact" else f"{f.code} ({f.match})"  # noqa: E731
    return {
        "dataset": meta.get("dataset"),
        "training_run_id": meta.get("training_run_id"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "format_version": meta.get("format_version"),
        "methods": meta.get("methods", []),
        "time_unit": meta.get("time_unit", "hours"),
        "window_hours": spec.window_hours,
        "window_start": None if spec.window_start is None else code(spec.window_start),
        "measurements": [{"name": f.name, "unit": f.unit, "transform": f.transform, "code": code(f),
                          "valid_range": list(f.valid_range) if f.valid_range else None, "out_of_range": f.out_of_range,
                          "duplicates": f.duplicates, "target_range": list(f.target_range) if f.target_range else None}
                         for f in spec.measurements],
        "interventions": [{"name": f.name, "kind": f.kind, "code": code(f), "event_value": f.value,
                           "event_unit": f.unit, "amount_unit": f.amount_unit, "end_code": f.end_code,
                           "max_dose": f.max_dose, "min_spacing_h": f.min_spacing_h}
                          for f in spec.interventions],
        "statics": [{"name": f.name, "unit": f.unit, "code": code(f),
                     "valid_range": list(f.valid_range) if f.valid_range else None} for f in spec.statics],
        "outcomes": [f.name for f in spec.outcomes],
        "reader": {"version": (meta.get("events") or {}).get("reader_version"),
                   "rules": (meta.get("events") or {}).get("rules", {})},
    }


def _text(d: dict) -> str:
    out = [f"dataset {d['dataset']}   training run {d['training_run_id'] or '-'}   format {d['format_version']}",
           f"data fingerprint {d['data_fingerprint'] or '-'}",
           f"methods: {', '.join(d['methods'])}   time in {d['time_unit']} since the window start "
           f"({d['window_start'] or 'first event'}); training window {d['window_hours']:g} h", "",
           "measurements (values in these units; the twin applies the transform):"]
    for m in d["measurements"]:
        rng = f"valid {m['valid_range']} ({m['out_of_range']})" if m["valid_range"] else "no range"
        out.append(f"  {m['name']:<16} {m['unit'] or '-':<10} {m['transform']:<8} {rng:<28} duplicates: {m['duplicates']:<5} code {m['code']}"
                   + (f", target {m['target_range']} (twinode-plan)" if m["target_range"] else ""))
    out.append("interventions (plan/contract amount is the total; an event's value is a rate where said):")
    for i in d["interventions"]:
        val = f"event value: rate in {i['event_unit']}" if i["event_value"] == "rate" else "event value: total"
        out.append(f"  {i['name']:<16} {i['kind']:<8} amount in {i['amount_unit'] or '-':<8} {val:<32} code {i['code']}"
                   + (f", ends at {i['end_code']}" if i["end_code"] else "")
                   + (f", at most {i['max_dose']:g} per dose" if i["max_dose"] is not None else "")
                   + (f", at least {i['min_spacing_h']:g} h apart" if i["min_spacing_h"] is not None else ""))
    out.append("statics (latest value at or before the window start; NaN = unknown):")
    for s in d["statics"]:
        out.append(f"  {s['name']:<16} {s['unit'] or '-':<10} " + (f"valid {s['valid_range']}  " if s["valid_range"] else "")
                   + f"code {s['code']}")
    out.append(f"outcomes: {', '.join(d['outcomes']) or '-'}")
    rules = d["reader"]["rules"]
    if rules:
        out.append(f"reader policies (version {d['reader']['version']}):")
        out += [f"  {k}: {v}" for k, v in rules.items()]
    else:
        out.append("reader policies: not recorded (exported before they travelled); the defaults apply")
    return "\n".join(out)


def run(a) -> int:
    from twinode.apps.twin_files import load_checked_model

    with tempfile.TemporaryDirectory() as tmp:
        _, meta, integrity = load_checked_model(a.twin, a.tracking_uri, tmp, a.sha256)
    print(integrity.statement(), file=sys.stderr)
    d = describe(meta)
    print(json.dumps(d, indent=1) if a.json else _text(d))
    return 0


def main(argv: list[str] | None = None) -> None:
    command_line.run_and_exit(run, _args(argv))


if __name__ == "__main__":
    main()

"""``twinode-data simulate glucose``: scenario trajectories or a MEDS cohort.

    twinode-data simulate glucose --scenarios scenarios.json --out trajectories.parquet
    twinode-data simulate glucose --patients N --days D --seed S --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twinode.errors import ConfigError


def add_parser(sub) -> None:
    """Adds ``simulate glucose`` to ``twinode-data``'s subcommands."""
    sim = sub.add_parser("simulate", help="simulate a cohort or scenarios (UVA/Padova T1D model)")
    which = sim.add_subparsers(dest="simulator", required=True)
    g = which.add_parser("glucose", help="UVA/Padova 2008 T1D model: --scenarios FILE, or --patients/--days/--seed")
    g.add_argument("--scenarios", help="scenarios.json (the simglucose reference format) -> per-minute trajectories")
    g.add_argument("--patients", type=int, help="cohort size (virtual patients drawn with replacement)")
    g.add_argument("--days", type=int, default=1, help="days per patient (default 1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="torch device for the simulation, e.g. cuda")
    g.add_argument("--out", required=True, help="a .parquet/.csv file (scenarios) or a MEDS folder (cohort)")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.scenarios is None) == (args.patients is None):
        raise ConfigError("simulate glucose", "both or neither of --scenarios/--patients",
                          hint="give --scenarios FILE, or --patients N [--days D --seed S]")
    _check_device(args.device)
    if args.scenarios is not None:
        return _scenarios(args)
    from twinode.data.simulators.glucose_cohort import generate_glucose_cohort

    rep = generate_glucose_cohort(args.out, args.patients, args.days, args.seed, device=args.device)
    print(f"simulated {rep.subjects} patients x {rep.days} day(s): {rep.events} events, splits {rep.splits}; "
          f"{rep.counterfactual_subjects} counterfactual arms; {rep.seconds:.1f} s -> {args.out}")
    return 0


def _scenarios(args) -> int:
    import torch

    from twinode.data.simulators.glucose_scenarios import load_scenarios, simulate_scenarios

    out = Path(args.out)
    if out.suffix not in (".parquet", ".csv"):
        raise ConfigError("--out", str(out), hint="scenario trajectories go to a .parquet or .csv file")
    scenarios = load_scenarios(args.scenarios)
    table = simulate_scenarios(scenarios, device=args.device, dtype=torch.float64)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.write_parquet(out) if out.suffix == ".parquet" else table.write_csv(out)
    print(f"simulated {len(scenarios)} scenario(s), {table.height} rows -> {out}")
    return 0


def _check_device(name: str) -> None:
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError("--device", name, hint=f"not a torch device ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device", name, hint="CUDA is not available here; use --device cpu")

"""twinode-plan's target and safety bounds: from the flags, else from the twin's own metadata.

A twin's FeatureSpec (its metadata's ``events.spec``) may give a measurement a
``target_range`` and an intervention ``max_dose`` / ``min_spacing_h``. Where neither a flag
nor the metadata gives a value, the command stops with a DataError that names exactly the
flags it needs, instead of scoring plans against a range meant for another dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinode.data.rules import spec_from_meta
from twinode.errors import DataError


@dataclass(frozen=True)
class Target:
    channel: int
    name: str
    low: float
    high: float
    unit: str
    source: str  # "flags", "metadata" or "flags and metadata"

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"target {self.name} in [{self.low:g}, {self.high:g}]{unit} (from the {self.source})"


@dataclass(frozen=True)
class DoseBounds:
    channel: int
    name: str
    max_dose: float
    min_spacing_h: float
    source: str

    def describe(self) -> str:
        return (f"dosing {self.name}: at most {self.max_dose:g} per dose, at least {self.min_spacing_h:g} h apart "
                f"(from the {self.source})")


def _source(from_flags: list[bool]) -> str:
    return "flags" if all(from_flags) else "twin's metadata" if not any(from_flags) else "flags and the twin's metadata"


def _listing(features) -> str:
    parts = []
    for f in features:
        extra = [f.unit] if f.unit else []
        if f.valid_range is not None:
            extra.append(f"valid {f.valid_range[0]:g}-{f.valid_range[1]:g}")
        parts.append(f"{f.name} ({', '.join(extra)})" if extra else f.name)
    return ", ".join(parts)


def resolve_target(meta: dict, target: str | None, low: float | None, high: float | None) -> Target:
    """The measurement to steer and its range: ``--target``/``--low``/``--high``, else the twin's
    ``target_range`` (the first measurement that has one when ``--target`` is not given)."""
    spec = spec_from_meta(meta)
    meas = list(spec.measurements)
    names = [f.name for f in meas]
    if target is not None and target not in names:
        raise DataError(f"--target {target!r} is not a measurement of this twin; it has {names}")
    feature = None
    if target is not None:
        feature = meas[names.index(target)]
    elif len(meas) == 1:
        feature = meas[0]
    else:
        with_range = [f for f in meas if f.target_range is not None]
        feature = with_range[0] if with_range else None
    rng = feature.target_range if feature is not None else None
    need = []
    if feature is None:
        need.append("--target NAME")
    if low is None and rng is None:
        need.append("--low L")
    if high is None and rng is None:
        need.append("--high H")
    if need:
        which = f"for {feature.name} " if feature is not None else ""
        raise DataError(f"twinode-plan needs {' '.join(need)}: the twin's metadata records no target range {which}to score "
                        f"plans against; its measurements: {_listing(meas)}",
                        hint="a FeatureSpec's target_range on a measurement makes the twin carry its own")
    lo = float(low) if low is not None else float(rng[0])
    hi = float(high) if high is not None else float(rng[1])
    if not lo < hi:
        raise DataError(f"the target range needs low < high, got [{lo:g}, {hi:g}] for {feature.name}")
    vr = feature.valid_range
    if vr is not None and (hi <= vr[0] or lo >= vr[1]):
        raise DataError(f"the target range [{lo:g}, {hi:g}] lies outside {feature.name}'s valid range "
                        f"[{vr[0]:g}, {vr[1]:g}] {feature.unit}".rstrip(), hint="check --low/--high and their unit")
    return Target(names.index(feature.name), feature.name, lo, hi, feature.unit, _source([low is not None, high is not None]))


def resolve_dose_bounds(meta: dict, dose: str | None, max_dose: float | None, min_spacing: float | None) -> DoseBounds:
    """The intervention ``--optimise`` doses and its safety bounds: ``--dose``/``--max-dose``/
    ``--min-spacing``, else the twin's ``max_dose``/``min_spacing_h`` (the intervention that has
    them, or the only intervention, when ``--dose`` is not given)."""
    spec = spec_from_meta(meta)
    inter = list(spec.interventions)
    names = [f.name for f in inter]
    if not inter:
        raise DataError("this twin has no intervention channels; there is nothing to dose")
    if dose is not None and dose not in names:
        raise DataError(f"--dose {dose!r} is not an intervention of this twin; it has {names}")
    feature = None
    if dose is not None:
        feature = inter[names.index(dose)]
    elif len(inter) == 1:
        feature = inter[0]
    else:
        bounded = [f for f in inter if f.max_dose is not None]
        feature = bounded[0] if len(bounded) == 1 else None
    need = []
    if feature is None:
        need.append(f"--dose NAME (one of {', '.join(names)})")
    if max_dose is None and (feature is None or feature.max_dose is None):
        need.append("--max-dose X")
    if min_spacing is None and (feature is None or feature.min_spacing_h is None):
        need.append("--min-spacing H")
    if need:
        raise DataError(f"--optimise needs {', '.join(need)}: the twin's metadata gives no safety bounds for them",
                        hint="an intervention's max_dose and min_spacing_h in the FeatureSpec make the twin carry its own")
    md = float(max_dose) if max_dose is not None else float(feature.max_dose)
    ms = float(min_spacing) if min_spacing is not None else float(feature.min_spacing_h)
    return DoseBounds(names.index(feature.name), feature.name, md, ms,
                      _source([max_dose is not None, min_spacing is not None]))

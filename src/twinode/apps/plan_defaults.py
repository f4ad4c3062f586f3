"""twinode-plan's target and safety bounds: from the flags, else from the twin's own metadata.

A twin's FeatureSpec (its metadata's ``events.spec``) may give a measurement a
``target_range`` and an intervention ``max_dose`` / ``min_spacing_h``. Where neither a flag
nor the metadata gives a value, the command stops with a DataError that names exactly the
flags it needs, instead of scoring plans against a range meant for another dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twinode.data.rules import spec_from_meta
from twinode.data.schema import Feature
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


def _choose(features: Sequence[Feature], name: str | None, flag: str, role: str, needs: str,
            records_defaults: Callable[[Feature], bool]) -> Feature | None:
    """The feature ``flag`` names; else the only ``role`` feature; else the one whose metadata
    records the defaults (``records_defaults``). None when none records them (the caller names
    the flags it needs); a DataError naming ``flag`` when several do."""
    names = [f.name for f in features]
    if name is not None:
        if name not in names:
            article = "an" if role[0] in "aeiou" else "a"
            raise DataError(f"{flag} {name!r} is not {article} {role} of this twin; it has {names}")
        return features[names.index(name)]
    if len(features) == 1:
        return features[0]
    recorded = [f for f in features if records_defaults(f)]
    if len(recorded) > 1:
        raise DataError(f"{needs} needs {flag} NAME: the twin's metadata records defaults for several {role}s "
                        f"({', '.join(f.name for f in recorded)})", hint=f"{flag} chooses one")
    return recorded[0] if recorded else None


def resolve_target(meta: dict, target: str | None, low: float | None, high: float | None) -> Target:
    """The measurement to steer and its range: ``--target``/``--low``/``--high``, else the twin's
    ``target_range`` (of the only measurement, or of the one measurement that records one, when
    ``--target`` is not given)."""
    meas = list(spec_from_meta(meta).measurements)
    feature = _choose(meas, target, "--target", "measurement", "twinode-plan", lambda f: f.target_range is not None)
    rng = feature.target_range if feature is not None else None
    low_v = low if low is not None else rng[0] if rng is not None else None
    high_v = high if high is not None else rng[1] if rng is not None else None
    if feature is None or low_v is None or high_v is None:
        need = (["--target NAME"] if feature is None else []) + (["--low L"] if low_v is None else []) \
            + (["--high H"] if high_v is None else [])
        which = f"for {feature.name} " if feature is not None else ""
        raise DataError(f"twinode-plan needs {' '.join(need)}: the twin's metadata records no target range {which}to score "
                        f"plans against; its measurements: {_listing(meas)}",
                        hint="a FeatureSpec's target_range on a measurement makes the twin carry its own")
    lo, hi = float(low_v), float(high_v)
    if not lo < hi:
        raise DataError(f"the target range needs low < high, got [{lo:g}, {hi:g}] for {feature.name}")
    vr = feature.valid_range
    if vr is not None and (hi <= vr[0] or lo >= vr[1]):
        raise DataError(f"the target range [{lo:g}, {hi:g}] lies outside {feature.name}'s valid range "
                        f"[{vr[0]:g}, {vr[1]:g}] {feature.unit}".rstrip(), hint="check --low/--high and their unit")
    return Target(meas.index(feature), feature.name, lo, hi, feature.unit, _source([low is not None, high is not None]))


def resolve_dose_bounds(meta: dict, dose: str | None, max_dose: float | None, min_spacing: float | None) -> DoseBounds:
    """The intervention ``--optimise`` doses and its safety bounds: ``--dose``/``--max-dose``/
    ``--min-spacing``, else the twin's ``max_dose``/``min_spacing_h`` (of the only intervention,
    or of the one intervention that records a ``max_dose``, when ``--dose`` is not given)."""
    inter = list(spec_from_meta(meta).interventions)
    if not inter:
        raise DataError("this twin has no intervention channels; there is nothing to dose")
    feature = _choose(inter, dose, "--dose", "intervention", "--optimise", lambda f: f.max_dose is not None)
    md = max_dose if max_dose is not None else feature.max_dose if feature is not None else None
    ms = min_spacing if min_spacing is not None else feature.min_spacing_h if feature is not None else None
    if feature is None or md is None or ms is None:
        need = ([f"--dose NAME (one of {', '.join(f.name for f in inter)})"] if feature is None else []) \
            + (["--max-dose X"] if md is None else []) + (["--min-spacing H"] if ms is None else [])
        raise DataError(f"--optimise needs {', '.join(need)}: the twin's metadata gives no safety bounds for them",
                        hint="an intervention's max_dose and min_spacing_h in the FeatureSpec make the twin carry its own")
    return DoseBounds(inter.index(feature), feature.name, float(md), float(ms),
                      _source([max_dose is not None, min_spacing is not None]))

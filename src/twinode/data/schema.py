"""The event contract and the FeatureSpec that gives each code a role.

Events are long rows ``subject_id, time, code, numeric_value``. A FeatureSpec maps codes
(exact, prefix or regex) to roles: ``measurement`` (modelled and forecast),
``intervention`` (bolus or infusion input), ``static`` (covariate taken at or before the
window start) and ``outcome`` (label for the risk head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from twinode.errors import ConfigError
from twinode.limits import load_yaml

EVENT_COLUMNS = ("subject_id", "time", "code", "numeric_value")
ROLES = ("measurement", "intervention", "static", "outcome")
MATCH_KINDS = ("exact", "prefix", "regex")
TRANSFORMS = ("identity", "log1p")
DUPLICATE_POLICIES = ("mean", "last", "first", "max", "min")
OUT_OF_RANGE_POLICIES = ("drop", "reject")
INTERVENTION_KINDS = ("bolus", "infusion")
DOSE_VALUES = ("total", "rate")  # what an intervention event's numeric_value means
RATE_PER = {"h": 1.0, "min": 60.0}  # a rate's time unit -> its factor to per hour
PLANNING_FIELDS = ("target_range", "max_dose", "min_spacing_h")


@dataclass(frozen=True)
class Feature:
    """One named feature and the codes that feed it."""

    name: str
    role: Literal["measurement", "intervention", "static", "outcome"]
    code: str
    match: str = "exact"
    unit: str = ""
    transform: str = "identity"
    valid_range: tuple[float, float] | None = None
    duplicates: str = "mean"
    out_of_range: str = "drop"
    kind: str = "bolus"  # interventions only
    effect_half_life_h: float = 2.0  # interventions only: initial effect-compartment half-life
    # Interventions only: hours from a bolus to its peak effect (the absorption compartment's
    # starting rate); None: effect_half_life_h (absorption twice as fast as elimination). See models.dynamics.DoseEffect.
    effect_peak_h: float | None = None
    # Infusions only: the exact code that stops the infusion (e.g. INFUSION_END//221906). Each
    # start is paired with the next stop of the same subject to give its duration.
    end_code: str | None = None
    # Interventions: an event's value is the ``total`` amount (default) or, for infusions, a
    # ``rate`` per hour (``rate_per: h``) or per minute (``min``); the reader turns a rate into
    # the contract's total amount over the duration (see data/events.py).
    value: str = "total"
    rate_per: str = "h"
    # Treatment planning (twinode-plan reads these from a twin's metadata; flags override them).
    # Measurements: the range a plan steers the channel into (e.g. CGM [70, 180] mg/dL).
    target_range: tuple[float, float] | None = None
    # Interventions: the largest single dose (in amount_unit) and the fewest hours between doses.
    max_dose: float | None = None
    min_spacing_h: float | None = None

    def __post_init__(self):
        _validate_feature({k: getattr(self, k) for k in self.__dataclass_fields__}, f"features.{self.name}")

    def matches(self, code: str) -> bool:
        if self.match == "exact":
            return code == self.code
        if self.match == "prefix":
            return code.startswith(self.code)
        return re.fullmatch(self.code, code) is not None

    @property
    def amount_unit(self) -> str:
        """The unit of the contract's ``amount`` (a total): ``U/h`` -> ``U``, ``mcg/kg/min`` -> ``mcg/kg``."""
        if self.value != "rate":
            return self.unit
        suffix = "/" + self.rate_per
        return self.unit[: -len(suffix)] if self.unit.endswith(suffix) else f"({self.unit})*{self.rate_per}"


def _check_choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, allowed)


# ---- validation (pydantic): types and choices per field, then the rules between fields ----

Range = tuple[float, float]


class FeatureModel(BaseModel):
    """One feature of a FeatureSpec as written in YAML; every field of :class:`Feature`."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    name: str
    role: Literal["measurement", "intervention", "static", "outcome"]
    code: Optional[str] = None  # default: the name
    match: Literal["exact", "prefix", "regex"] = "exact"
    unit: str = ""
    transform: Literal["identity", "log1p"] = "identity"
    valid_range: Optional[Range] = None
    duplicates: Literal["mean", "last", "first", "max", "min"] = "mean"
    out_of_range: Literal["drop", "reject"] = "drop"
    kind: Literal["bolus", "infusion"] = "bolus"
    effect_half_life_h: float = 2.0
    effect_peak_h: Optional[float] = None
    end_code: Optional[str] = None
    value: Literal["total", "rate"] = "total"
    rate_per: Literal["h", "min"] = "h"
    target_range: Optional[Range] = None
    max_dose: Optional[float] = None
    min_spacing_h: Optional[float] = None


class WindowStartModel(BaseModel):
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    code: str
    match: Literal["exact", "prefix", "regex"] = "exact"


class FeatureSpecModel(BaseModel):
    """A FeatureSpec document: its features are validated one by one (errors name the feature)."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    name: Optional[str] = None
    features: list[dict[str, Any]]
    window_hours: float = 48.0
    window_start: Any = None  # a code string or {code, match}: WindowStartModel


CHOICES = {"role": ROLES, "match": MATCH_KINDS, "transform": TRANSFORMS, "duplicates": DUPLICATE_POLICIES,
           "out_of_range": OUT_OF_RANGE_POLICIES, "kind": INTERVENTION_KINDS, "value": DOSE_VALUES, "rate_per": tuple(RATE_PER)}
_EXPECTED = {"float_parsing": "a number", "float_type": "a number", "string_type": "a string", "tuple_type": "[low, high]",
             "too_short": "[low, high]", "too_long": "[low, high]", "missing": "a value", "dict_type": "a mapping",
             "list_type": "a list", "model_type": "a mapping", "finite_number": "a finite number"}


def _config_error(exc: ValidationError, where: str, data: Any) -> ConfigError:
    """The first problem pydantic found, as twinode's ConfigError naming the field (``where.field``)."""
    err = exc.errors(include_url=False)[0]
    field_name = next((p for p in err["loc"] if isinstance(p, str)), "")
    key = ".".join(p for p in (where, field_name) if p) or "spec"
    got = data.get(field_name) if isinstance(data, dict) and field_name in data else err.get("input")
    if err["type"] in ("literal_error", "enum") and field_name in CHOICES:
        return ConfigError(key, got, CHOICES[field_name])
    if err["type"] == "literal_error":  # window_start.match
        return ConfigError(key, got, MATCH_KINDS)
    return ConfigError(key, got, hint=f"expected {_EXPECTED.get(err['type'], err['msg'])}")


def _validate_feature(raw: dict, where: str) -> dict:
    """Types and choices (FeatureModel), then the rules between fields; returns the coerced fields."""
    try:
        f = FeatureModel.model_validate(raw).model_dump()
    except ValidationError as exc:
        raise _config_error(exc, where, raw) from None
    if f["code"] is None:
        f["code"] = f["name"]
    if f["match"] == "regex":
        try:
            re.compile(f["code"])
        except re.error as exc:
            raise ConfigError(f"{where}.code", f["code"], hint=f"not a valid regex: {exc}") from None
    infusion = f["role"] == "intervention" and f["kind"] == "infusion"
    if f["value"] == "rate" and not infusion:
        raise ConfigError(f"{where}.value", f["value"], hint="value: rate is for interventions of kind: infusion")
    if f["effect_peak_h"] is not None and not f["effect_peak_h"] > 0:
        raise ConfigError(f"{where}.effect_peak_h", f["effect_peak_h"], hint="hours > 0, or null for the default")
    if f["end_code"] is not None and not infusion:
        raise ConfigError(f"{where}.end_code", f["end_code"], hint="end_code is for interventions of kind: infusion")
    for key in ("valid_range", "target_range"):
        rng = f[key]
        if rng is not None and not rng[0] < rng[1]:
            raise ConfigError(f"{where}.{key}", list(raw.get(key) or rng), hint="expected [low, high] with low < high")
    if f["target_range"] is not None and f["role"] != "measurement":
        raise ConfigError(f"{where}.target_range", list(f["target_range"]), hint="target_range is for measurements")
    for key in ("max_dose", "min_spacing_h"):
        v = f[key]
        if v is not None and (f["role"] != "intervention" or not v > 0):
            raise ConfigError(f"{where}.{key}", v, hint=f"{key} is a number > 0, for interventions")
    return f


@dataclass(frozen=True)
class WindowStart:
    """Which event opens each subject's window (e.g. the first ``ICU_ADMISSION//...``).

    Without one, a subject's window starts at its earliest timed event (or at time 0 when
    times are already hours since a start).
    """

    code: str
    match: str = "exact"

    def __post_init__(self):
        _check_choice("window_start.match", self.match, MATCH_KINDS)

    def matches(self, code: str) -> bool:
        if self.match == "exact":
            return code == self.code
        if self.match == "prefix":
            return code.startswith(self.code)
        return re.fullmatch(self.code, code) is not None


@dataclass(frozen=True)
class FeatureSpec:
    """Roles for the codes of one dataset, in a fixed order that becomes tensor channels."""

    name: str
    features: tuple[Feature, ...]
    window_hours: float = 48.0
    time_unit: str = "hours"
    extra: dict = field(default_factory=dict)
    window_start: WindowStart | None = None

    def __post_init__(self):
        names = [f.name for f in self.features]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError("features", sorted(dup), hint="feature names must be unique")
        if not self.measurements:
            raise ConfigError("features", names, hint="a FeatureSpec needs at least one measurement")

    def by_role(self, role: str) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.role == role)

    @property
    def measurements(self) -> tuple[Feature, ...]:
        return self.by_role("measurement")

    @property
    def interventions(self) -> tuple[Feature, ...]:
        return self.by_role("intervention")

    @property
    def statics(self) -> tuple[Feature, ...]:
        return self.by_role("static")

    @property
    def outcomes(self) -> tuple[Feature, ...]:
        return self.by_role("outcome")

    def resolve(self, code: str) -> Feature | None:
        """The feature an event code belongs to: an exact code wins, then a feature's own name,
        then the first prefix/regex pattern in feature order. Training and every inference
        path resolve codes with this one function."""
        for f in self.features:
            if f.match == "exact" and f.code == code:
                return f
        for f in self.features:
            if f.name == code:
                return f
        for f in self.features:
            if f.match != "exact" and f.matches(code):
                return f
        return None

    @classmethod
    def from_dict(cls, data: dict, name: str | None = None, source: str | None = None) -> "FeatureSpec":
        """A FeatureSpec from its YAML/JSON form, validated field by field; a ConfigError names the
        field (``features.NAME.FIELD``, or ``features[i]`` for a feature without a name) and, when
        ``source`` is given, the file."""
        try:
            return cls._from_dict(data, name)
        except ConfigError as exc:
            if source is not None:
                exc.args = (f"{exc} [file={source}]",)
            raise

    @classmethod
    def _from_dict(cls, data: Any, name: str | None) -> "FeatureSpec":
        if not isinstance(data, dict) or "features" not in data:
            raise ConfigError("features", type(data).__name__, hint="a FeatureSpec is a mapping with a 'features' list")
        try:
            doc = FeatureSpecModel.model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc, "", data) from None
        feats = []
        for i, raw in enumerate(doc.features):
            if "name" not in raw or "role" not in raw:
                raise ConfigError(f"features[{i}]", raw, hint="each feature needs 'name' and 'role'")
            unknown = sorted(set(raw) - set(FeatureModel.model_fields))
            if unknown:
                raise ConfigError(f"features[{i}].{unknown[0]}", raw[unknown[0]], sorted(Feature.__dataclass_fields__))
            feats.append(Feature(**_validate_feature(raw, f"features.{raw['name']}")))
        return cls(
            name=name or doc.name or "unnamed",
            features=tuple(feats),
            window_hours=doc.window_hours,
            extra={k: v for k, v in data.items() if k not in ("features", "name", "window_hours", "window_start")},
            window_start=_window_start(data.get("window_start")),
        )

    @classmethod
    def from_yaml(cls, path: str | Path) -> "FeatureSpec":
        path = Path(path)
        with path.open() as fh:
            return cls.from_dict(load_yaml(fh.read(), file=str(path), what="FeatureSpec"), name=path.stem, source=str(path))

    def to_dict(self) -> dict:
        out = {"name": self.name, "window_hours": self.window_hours, "features": []}
        for f in self.features:
            d = {k: getattr(f, k) for k in Feature.__dataclass_fields__}
            for k in PLANNING_FIELDS:  # absent unless set, so specs without them keep their fingerprint
                if d[k] is None:
                    del d[k]
            for k in ("valid_range", "target_range"):
                if d.get(k) is not None:
                    d[k] = list(d[k])
            out["features"].append(d)
        if self.window_start is not None:
            out["window_start"] = {"code": self.window_start.code, "match": self.window_start.match}
        return out


def _window_start(raw: Any) -> WindowStart | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return WindowStart(raw)
    if not isinstance(raw, dict):
        raise ConfigError("window_start", raw, hint="expected a code string or {code: ..., match: exact|prefix|regex}")
    try:
        ws = WindowStartModel.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        if err["type"] == "literal_error":
            raise ConfigError("window_start.match", raw.get("match"), MATCH_KINDS) from None
        raise ConfigError("window_start", raw, hint="expected a code string or {code: ..., match: exact|prefix|regex}") from None
    return WindowStart(ws.code, ws.match)

"""A plan file whose top level is a mapping: ``{label, doses: [...]}`` or one dose written out.

Without this, a one-dose plan written as a mapping (``{name: VASO, time_h: 2, amount: 8}``)
read as ``{label, doses}`` with no ``doses``: an empty plan, silently. Now a mapping is either
a plan (keys ``label``, ``doses``) or one dose (``name``, ``time_h``, ``amount``[,
``duration_h``][, ``label``]); any other key is an error that lists the allowed ones.
"""

from __future__ import annotations

from twinode.errors import DataError

DOSE_KEYS = ("name", "time_h", "amount", "duration_h")
PLAN_KEYS = ("label", "doses")


def plan_from_mapping(data: dict, label: str, file: str | None = None) -> tuple[str, list]:
    """``(label, doses)`` for a top-level mapping; ``label`` is the default (the file's stem)."""
    keys = set(map(str, data))
    label = str(data.get("label", label))
    if "doses" in keys:
        unknown = sorted(keys - set(PLAN_KEYS))
        if unknown:
            raise DataError(f"plan: unknown key(s) {unknown} beside 'doses'; a plan mapping has {list(PLAN_KEYS)}",
                            file=file, hint="put each dose in the 'doses' list")
        return label, data["doses"] if data["doses"] is not None else []
    if keys & set(DOSE_KEYS):
        unknown = sorted(keys - set(DOSE_KEYS) - {"label"})
        if unknown:
            raise DataError(f"plan: unknown key(s) {unknown} in a one-dose plan; a dose has {list(DOSE_KEYS)}",
                            file=file, hint="check the spelling, or write a list of doses")
        return label, [{k: v for k, v in data.items() if k != "label"}]
    if keys - {"label"}:
        raise DataError(f"plan: unknown key(s) {sorted(keys - {'label'})}; expected a list of doses, a mapping "
                        f"{{label, doses}} or one dose {list(DOSE_KEYS)}", file=file)
    return label, []  # {label: ...} alone: a named plan with no further doses

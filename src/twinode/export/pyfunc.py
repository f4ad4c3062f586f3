"""MLflow pyfunc model (MLflow "models from code") that serves the TorchScript twin.

This file is logged as the model's code: it imports only torch, mlflow and pydantic, never
twinode, so ``mlflow.pyfunc.load_model("models:/NAME@champion")`` and ``mlflow models serve``
work where twinode is not installed. The weights come from the ``twin`` artifact (twin.pt),
loaded with ``torch.jit.load`` only (no unpickling) and checked against its sha256.

Requests are plain JSON-like records that use the dataset's own names:
``{"history": [{"time": 0.0, "name": "HR", "value": 82.0}, ...],
  "static": [{"name": "AGE", "value": 64.0}], "plan": [{"name": "VASO", "time_h": 5.0,
  "amount": 8.0, "duration_h": 0.0}], "query_times": [6.0, 12.0]}``.
The answer has one record per (request, query time, measurement): mean, std and a 5-95% interval.

Requests are read by the rules the twin was trained with, taken from the ``events`` block of
its ``twinode.json`` (the same rules as ``twinode.data.rules``, restated here because this
file may not import twinode): names or codes resolve as in training, values outside a
feature's ``valid_range`` are dropped (or refused for ``out_of_range: reject``), exact
duplicates are dropped and same-time readings of a measurement combined by its
``duplicates`` policy, a negative dose is refused and a bolus's duration is ignored. Plan
amounts are the contract's totals.
"""

from __future__ import annotations

import hashlib
import json
import re

import mlflow
import torch
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel, ConfigDict

Z_95 = 1.6448536269514722  # standard normal 95% quantile: mean +- Z_95 * std is the 5-95% interval


class Strict(BaseModel):
    """Request parts refuse keys they do not know: a misspelt ``plans`` is an error, never a
    silently dropped plan."""

    model_config = ConfigDict(extra="forbid")


class Observation(Strict):
    time: float  # hours, the same clock as query_times and plan
    name: str  # a measurement name from the twin's metadata
    value: float


class StaticValue(Strict):
    name: str
    value: float


class Dose(Strict):
    name: str  # an intervention name from the twin's metadata
    time_h: float
    amount: float
    duration_h: float = 0.0  # 0 = bolus, otherwise an infusion of amount/duration_h per hour


class ForecastRequest(Strict):
    history: list[Observation]
    static: list[StaticValue] = []
    plan: list[Dose] = []
    query_times: list[float]


class ForecastRow(BaseModel):
    request: int
    time_h: float
    name: str
    mean: float
    std: float
    q05: float
    q95: float


def _sha256(module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _features(meta: dict) -> list[dict]:
    """Every feature with its role and channel, from the twin's reader policies (older twins: the lists)."""
    spec = (meta.get("events") or {}).get("spec")
    if spec:
        feats = [dict(f) for f in spec["features"]]
    else:
        feats = [dict(f, role=r) for r, k in (("measurement", "measurements"), ("intervention", "interventions"),
                                                ("static", "statics")) for f in meta[k]]
    seen: dict[str, int] = {}
    for f in feats:
        f["channel"] = seen.get(f["role"], 0)
        seen[f["role"]] = f["channel"] + 1
    return feats


def _resolve(feats: list[dict], code: str):
    """An exact code, then a feature's name, then the first prefix/regex pattern (as in training)."""
    for f in feats:
        if f.get("match", "exact") == "exact" and f.get("code", f["name"]) == code:
            return f
    for f in feats:
        if f["name"] == code:
            return f
    for f in feats:
        kind, pattern = f.get("match", "exact"), f.get("code", f["name"])
        if (kind == "prefix" and code.startswith(pattern)) or (kind == "regex" and re.fullmatch(pattern, code)):
            return f
    return None


def _in_range(f: dict, value: float, where: str) -> bool:
    rng = f.get("valid_range")
    if rng is None or value != value or rng[0] <= value <= rng[1]:
        return True
    if f.get("out_of_range", "drop") == "reject":
        raise ValueError(f"{where}: {f['name']} value {value} outside valid_range {list(rng)}")
    return False


def _combine(values: list[float], policy: str) -> float:
    if policy == "first":
        return values[0]
    if policy == "last":
        return values[-1]
    if policy == "max":
        return max(values)
    if policy == "min":
        return min(values)
    return sum(values) / len(values)


def request_tensors(req: ForecastRequest, meta: dict, index: int = 0) -> tuple[torch.Tensor, ...]:
    """One request -> the tensors of ``forecast``, by the twin's reader rules (see the module doc)."""
    where = f"request {index}"
    feats = _features(meta)
    n_meas, n_stat = len(meta["measurements"]), len(meta["statics"])
    names = lambda role: sorted(f["name"] for f in feats if f["role"] == role)  # noqa: E731
    cells: dict[tuple[float, int], list[float]] = {}
    seen = set()
    for o in req.history:
        f = _resolve(feats, o.name)
        if f is None or f["role"] != "measurement":
            raise ValueError(f"{where}: history name {o.name!r} is not a measurement of this twin; expected one of {names('measurement')}")
        if (o.time, o.name, o.value) in seen:  # an exact duplicate row
            continue
        seen.add((o.time, o.name, o.value))
        if _in_range(f, o.value, where):
            cells.setdefault((o.time, f["channel"]), []).append(o.value)
    times = sorted({t for t, _ in cells})
    row = {t: i for i, t in enumerate(times)}
    values, mask = torch.zeros(len(times), n_meas), torch.zeros(len(times), n_meas)
    policies = [f.get("duplicates", "mean") for f in feats if f["role"] == "measurement"]
    for (t, c), vs in cells.items():
        values[row[t], c] = _combine(vs, policies[c])
        mask[row[t], c] = 1.0
    static = torch.full((n_stat,), float("nan"))
    for s in req.static:
        f = _resolve(feats, s.name)
        if f is None or f["role"] != "static":
            raise ValueError(f"{where}: static name {s.name!r} is not a static of this twin; expected one of {names('static')}")
        if _in_range(f, s.value, where):
            static[f["channel"]] = s.value
    doses = torch.zeros(len(req.plan), 4)
    for k, d in enumerate(req.plan):
        f = _resolve(feats, d.name)
        if f is None or f["role"] != "intervention":
            raise ValueError(f"{where}: plan name {d.name!r} is not an intervention of this twin; expected one of {names('intervention')}")
        if d.amount < 0 or d.duration_h < 0:
            raise ValueError(f"{where}: plan dose {k} ({d.name}): amount and duration_h must be >= 0, got {d.amount}, {d.duration_h}")
        dur = d.duration_h if f.get("kind", "bolus") == "infusion" else 0.0  # a bolus is given at its time
        doses[k] = torch.tensor([d.time_h, float(f["channel"]), d.amount, dur])
    return (torch.tensor(times, dtype=torch.float32), values, mask, static, doses,
            torch.tensor(req.query_times, dtype=torch.float32))


def _one_line(exc: BaseException) -> str:
    """The message a TorchScript error ends with (``RuntimeError: times: expected ...``),
    without the interpreter's traceback and the build machine's source paths."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    found = [re.sub(r"^[\w.]*(Error|Exception): ", "", ln) for ln in lines if re.match(r"^[\w.]*(Error|Exception): ", ln)]
    return (found[-1] if found else (lines[0] if lines else type(exc).__name__))[:500]


class TwinPyfunc(PythonModel):
    def load_context(self, context) -> None:
        extra = {"twinode.json": ""}
        path = context.artifacts["twin"]
        expected = (getattr(context, "model_config", None) or {}).get("twin_sha256")  # recorded by publish_twin
        if expected and hashlib.sha256(open(path, "rb").read()).hexdigest() != expected:
            raise ValueError("twin.pt does not match the sha256 recorded when this model was logged (modified or replaced file)")
        self.twin = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        self.meta = json.loads(extra["twinode.json"])
        if _sha256(self.twin) != self.meta.get("weights_sha256"):
            raise ValueError(f"{path}: weights do not match the sha256 in its metadata (modified or damaged file)")
        self.twin.eval()

    def predict(self, context, model_input: list[ForecastRequest], params=None) -> list[ForecastRow]:
        names = [m["name"] for m in self.meta["measurements"]]
        rows: list[ForecastRow] = []
        for i, req in enumerate(model_input):
            if isinstance(req, dict):
                req = ForecastRequest(**req)
            args = request_tensors(req, self.meta, i)
            try:
                with torch.inference_mode():
                    mean, std = self.twin.forecast(*args)
            except (torch.jit.Error, RuntimeError) as exc:  # a TorchScript traceback: its last message, one line
                raise ValueError(f"request {i}: {_one_line(exc)}") from None
            for q, t in enumerate(req.query_times):
                for d, name in enumerate(names):
                    m, s = float(mean[q, d]), float(std[q, d])
                    rows.append(ForecastRow(request=i, time_h=t, name=name, mean=m, std=s,
                                            q05=m - Z_95 * s, q95=m + Z_95 * s))
        return rows


mlflow.models.set_model(TwinPyfunc())

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
"""

from __future__ import annotations

import hashlib
import json

import mlflow
import torch
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel

Z_95 = 1.6448536269514722  # standard normal 95% quantile: mean +- Z_95 * std is the 5-95% interval


class Observation(BaseModel):
    time: float  # hours, the same clock as query_times and plan
    name: str  # a measurement name from the twin's metadata
    value: float


class StaticValue(BaseModel):
    name: str
    value: float


class Dose(BaseModel):
    name: str  # an intervention name from the twin's metadata
    time_h: float
    amount: float
    duration_h: float = 0.0  # 0 = bolus, otherwise an infusion of amount/duration_h per hour


class ForecastRequest(BaseModel):
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


def request_tensors(req: ForecastRequest, meta: dict, index: int = 0) -> tuple[torch.Tensor, ...]:
    """One request -> the tensors of ``forecast`` (shared with twinode-predict's checks by name)."""
    where = f"request {index}"
    meas = {m["name"]: i for i, m in enumerate(meta["measurements"])}
    stat = {m["name"]: i for i, m in enumerate(meta["statics"])}
    ints = {m["name"]: i for i, m in enumerate(meta["interventions"])}
    times = sorted({o.time for o in req.history})
    row = {t: i for i, t in enumerate(times)}
    values = torch.zeros(len(times), len(meas))
    mask = torch.zeros(len(times), len(meas))
    for o in req.history:
        if o.name not in meas:
            raise ValueError(f"{where}: history name {o.name!r} is not a measurement of this twin; expected one of {sorted(meas)}")
        values[row[o.time], meas[o.name]] = o.value
        mask[row[o.time], meas[o.name]] = 1.0
    static = torch.full((len(stat),), float("nan"))
    for s in req.static:
        if s.name not in stat:
            raise ValueError(f"{where}: static name {s.name!r} is not a static of this twin; expected one of {sorted(stat)}")
        static[stat[s.name]] = s.value
    doses = torch.zeros(len(req.plan), 4)
    for k, d in enumerate(req.plan):
        if d.name not in ints:
            raise ValueError(f"{where}: plan name {d.name!r} is not an intervention of this twin; expected one of {sorted(ints)}")
        doses[k] = torch.tensor([d.time_h, float(ints[d.name]), d.amount, d.duration_h])
    return (torch.tensor(times, dtype=torch.float32), values, mask, static, doses,
            torch.tensor(req.query_times, dtype=torch.float32))


class TwinPyfunc(PythonModel):
    def load_context(self, context) -> None:
        extra = {"twinode.json": ""}
        path = context.artifacts["twin"]
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
            with torch.inference_mode():
                mean, std = self.twin.forecast(*args)
            for q, t in enumerate(req.query_times):
                for d, name in enumerate(names):
                    m, s = float(mean[q, d]), float(std[q, d])
                    rows.append(ForecastRow(request=i, time_h=t, name=name, mean=m, std=s,
                                            q05=m - Z_95 * s, q95=m + Z_95 * s))
        return rows


mlflow.models.set_model(TwinPyfunc())

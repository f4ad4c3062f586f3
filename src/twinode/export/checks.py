"""Argument checks of the exported twin: scriptable free functions compiled into twin.pt.

Each error names the argument, what was expected and what came, so a consumer in Python
or C++ can fix the call without reading the code.
"""

import torch
from torch import Tensor

# Beyond this many hours between the anchor and a query time, a request is almost surely
# a unit mistake (seconds or minutes given as hours), and would take millions of steps.
MAX_SPAN_H = 10000.0


def _shape(t: Tensor) -> str:
    return str(t.shape)


def check_history(times: Tensor, values: Tensor, mask: Tensor, n_measurements: int, prefix: str):
    if times.dim() != 1:
        raise ValueError(prefix + "times: expected a 1-D float tensor [N] of hours, got shape " + _shape(times))
    n = times.shape[0]
    if values.dim() != 2 or values.shape[0] != n or values.shape[1] != n_measurements:
        raise ValueError(prefix + "values: expected shape [N, D] = [" + str(n) + ", " + str(n_measurements) + "], got " + _shape(values))
    if mask.shape != values.shape:
        raise ValueError(prefix + "mask: expected the shape of values " + _shape(values) + ", got " + _shape(mask))
    if not bool(torch.isfinite(times).all()):
        raise ValueError(prefix + "times: contains NaN or inf")
    if n > 1 and bool((times[1:] < times[:-1]).any()):
        raise ValueError(prefix + "times: must be sorted ascending (hours)")
    if bool(((mask > 0) & ~torch.isfinite(values)).any()):
        raise ValueError(prefix + "values: NaN or inf where mask == 1; set mask to 0 for missing entries")


def check_static(static: Tensor, n_static: int, prefix: str):
    if static.dim() != 1 or static.shape[0] != n_static:
        raise ValueError(prefix + "static: expected shape [S] = [" + str(n_static) + "] (NaN = unknown), got " + _shape(static))
    if bool(torch.isinf(static).any()):
        raise ValueError(prefix + "static: contains inf (use NaN for unknown)")


def check_doses(doses: Tensor, n_interventions: int, prefix: str):
    if doses.dim() != 2 or doses.shape[1] != 4:
        raise ValueError(prefix + "doses: expected shape [M, 4] with rows (time_h, channel, amount, duration_h), got " + _shape(doses))
    if doses.shape[0] > 0:
        if not bool(torch.isfinite(doses).all()):
            raise ValueError(prefix + "doses: contains NaN or inf")
        ch = doses[:, 1]
        if bool(((ch < 0) | (ch >= n_interventions) | (ch != torch.floor(ch))).any()):
            raise ValueError(prefix + "doses: channel index out of range; expected integers in [0, " + str(n_interventions) + ")")
        if bool((doses[:, 3] < 0).any()):
            raise ValueError(prefix + "doses: duration_h must be >= 0 (0 = bolus)")


def check_query(query_times: Tensor, anchor: float, max_span_h: float, prefix: str):
    if query_times.dim() != 1:
        raise ValueError(prefix + "query_times: expected a 1-D tensor [Q] of hours, got shape " + _shape(query_times))
    if not bool(torch.isfinite(query_times).all()):
        raise ValueError(prefix + "query_times: contains NaN or inf")
    if query_times.shape[0] > 0:
        span = float((query_times - anchor).abs().max().item())
        if span > max_span_h:
            raise ValueError(prefix + "query_times: " + str(span) + " h from the last observation (limit "
                             + str(max_span_h) + " h); times are in hours, not seconds or minutes")


def check_counts(counts: Tensor, batch: int, upper: int, name: str):
    if counts.dim() != 1 or counts.shape[0] != batch:
        raise ValueError(name + ": expected shape [B] = [" + str(batch) + "], got " + _shape(counts))
    if bool(((counts < 0) | (counts > upper)).any()):
        raise ValueError(name + ": expected integers in [0, " + str(upper) + "], got values from "
                         + str(int(counts.min().item())) + " to " + str(int(counts.max().item())))


def subject_prefix(b: int) -> str:
    return "subject " + str(b) + ": "

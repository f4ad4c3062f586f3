"""UVA/Padova 2008 type-1 diabetes model for a batch of patients at once, in torch.

Thirteen states per patient (Dalla Man et al., IEEE TBME 2007; Kovatchev et al. 2009), in
the form and units of simglucose's ``T1DPatient``:

    x0 x1   stomach solid / liquid glucose (mg)     x2  gut glucose (mg)
    x3 x4   plasma / tissue glucose (mg/kg)         x5  plasma insulin (pmol/kg)
    x6      insulin action on utilisation           x7 x8  delayed insulin action on production
    x9      liver insulin (pmol/kg)                 x10 x11  subcutaneous insulin (pmol/kg)
    x12     subcutaneous glucose (mg/kg); divided by Vg it is the CGM's glucose (mg/dL)

Inputs, one value per minute and held constant over it (as simglucose does): meal
announcements in grams (eaten at 5 g/min from that minute; an announcement during a meal
queues behind it) and insulin in U/min (basal rate plus boluses delivered within the
minute). Gastric emptying is nonlinear in the amount in the stomach relative to the
current meal's size ``Dbar``; like simglucose, ``Dbar`` is the stomach content when the
meal began (mg) plus the grams eaten since, a discrete state updated between minutes.

Each minute is integrated with ``substeps`` classical RK4 steps; all patients advance in
lockstep, so a batch of 1,000 patients costs about as many torch ops as one.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from typing import Tuple

import torch
from torch import Tensor

from twinode.errors import ConfigError

N_STATES = 13
EAT_RATE_G_PER_MIN = 5.0
PARAMS_FILE = "vpatient_params.csv"
# The model's constants (columns of vpatient_params.csv) that the vector field reads.
PARAM_NAMES = (
    "BW", "Vg", "Vi", "Ib", "u2ss", "kabs", "kmax", "kmin", "b", "d", "f", "kp1", "kp2", "kp3",
    "Fsnc", "ke1", "ke2", "k1", "k2", "Vm0", "Vmx", "Km0", "m1", "m2", "m4", "m30", "ka1", "ka2",
    "kd", "ksc", "p2u", "ki",
)
# States whose derivative is zeroed when they are negative (keeps masses non-negative).
_NONNEG_STATES = (3, 4, 5, 9, 10, 11, 12)


@dataclass
class PatientBatch:
    """Parameters (each ``[B]``) and default initial states ``[B, 13]`` of a batch of patients."""

    names: list[str]
    params: dict[str, Tensor]
    x0: Tensor

    def __len__(self) -> int:
        return len(self.names)

    def basal_u_per_min(self) -> Tensor:
        """The insulin rate that holds each patient at its steady state (u2ss, pmol/kg/min)."""
        return self.params["u2ss"] * self.params["BW"] / 6000.0


def _read_table() -> dict[str, dict[str, float]]:
    text = resources.files("twinode.data.simulators").joinpath("data", PARAMS_FILE).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    return {r["Name"]: {k.replace(" ", ""): float(v) for k, v in r.items() if k != "Name"} for r in rows}


def patient_names() -> list[str]:
    """The 30 virtual patients: adolescent#001..010, adult#001..010, child#001..010."""
    return list(_read_table())


def load_patients(names: list[str] | None = None, *, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float64) -> PatientBatch:
    """A batch of virtual patients by name (repeats allowed; default: all 30)."""
    table = _read_table()
    names = list(table) if names is None else list(names)
    unknown = sorted({n for n in names if n not in table})
    if unknown:
        raise ConfigError("patient", unknown[0] if len(unknown) == 1 else unknown, allowed=list(table),
                          hint="use one of the 30 virtual patients' names")
    rows = [table[n] for n in names]
    params = {k: torch.tensor([r[k] for r in rows], dtype=dtype, device=device) for k in PARAM_NAMES}
    x0 = torch.tensor([[r[f"x0_{i + 1}"] for i in range(N_STATES)] for r in rows], dtype=dtype, device=device)
    return PatientBatch(names, params, x0)


def nonneg_mask(device: torch.device | str = "cpu") -> Tensor:
    """Which states stop falling once negative (their derivative is zeroed there)."""
    mask = torch.zeros(N_STATES, dtype=torch.bool, device=device)
    mask[list(_NONNEG_STATES)] = True
    return mask


def vector_field(x: Tensor, cho_mg: Tensor, insulin_pmol: Tensor, dbar: Tensor, p: dict[str, Tensor],
                 nonneg: Tensor | None = None) -> Tensor:
    """dx/dt ``[B, 13]`` per minute for meal intake ``cho_mg`` (mg/min) and insulin (pmol/kg/min)."""
    q_solid, q_liquid, q_gut, gp, gt, ip = x[:, 0], x[:, 1], x[:, 2], x[:, 3], x[:, 4], x[:, 5]
    x_act, i1, i_delayed, il, isc1, isc2, gs = x[:, 6], x[:, 7], x[:, 8], x[:, 9], x[:, 10], x[:, 11], x[:, 12]

    # Gastric emptying slows as the stomach empties below fractions b and d of the meal.
    qsto = q_solid + q_liquid
    has_meal = dbar > 0
    dsafe = torch.where(has_meal, dbar, torch.ones_like(dbar))
    aa = 2.5 / (1.0 - p["b"]) / dsafe
    cc = 2.5 / p["d"] / dsafe
    kgut_meal = p["kmin"] + (p["kmax"] - p["kmin"]) / 2.0 * (
        torch.tanh(aa * (qsto - p["b"] * dsafe)) - torch.tanh(cc * (qsto - p["d"] * dsafe)) + 2.0)
    kgut = torch.where(has_meal, kgut_meal, p["kmax"])

    d_solid = -p["kmax"] * q_solid + cho_mg
    d_liquid = p["kmax"] * q_solid - kgut * q_liquid
    d_gut = kgut * q_liquid - p["kabs"] * q_gut

    rate_appearance = p["f"] * p["kabs"] * q_gut / p["BW"]
    egp = torch.clamp(p["kp1"] - p["kp2"] * gp - p["kp3"] * i_delayed, min=0.0)
    renal = torch.where(gp > p["ke2"], p["ke1"] * (gp - p["ke2"]), torch.zeros_like(gp))
    d_gp = egp + rate_appearance - p["Fsnc"] - renal - p["k1"] * gp + p["k2"] * gt
    uptake = (p["Vm0"] + p["Vmx"] * x_act) * gt / (p["Km0"] + gt)
    d_gt = -uptake + p["k1"] * gp - p["k2"] * gt

    d_ip = -(p["m2"] + p["m4"]) * ip + p["m1"] * il + p["ka1"] * isc1 + p["ka2"] * isc2
    plasma_insulin = ip / p["Vi"]
    d_act = -p["p2u"] * x_act + p["p2u"] * (plasma_insulin - p["Ib"])
    d_i1 = -p["ki"] * (i1 - plasma_insulin)
    d_delayed = -p["ki"] * (i_delayed - i1)
    d_il = -(p["m1"] + p["m30"]) * il + p["m2"] * ip
    d_isc1 = insulin_pmol - (p["ka1"] + p["kd"]) * isc1
    d_isc2 = p["kd"] * isc1 - p["ka2"] * isc2
    d_gs = -p["ksc"] * gs + p["ksc"] * gp

    dx = torch.stack([d_solid, d_liquid, d_gut, d_gp, d_gt, d_ip, d_act, d_i1, d_delayed, d_il, d_isc1, d_isc2, d_gs], 1)
    nonneg = nonneg_mask(x.device) if nonneg is None else nonneg
    return torch.where(nonneg & (x < 0), 0.0, dx)


# Fast form of the same field for simulation: dx = A x + c + u + N(x). The linear kinetics
# are A's 26 non-zero entries applied as one gather, multiply and index_add (instead of
# ~40 small ops, and cheaper than a batched 13x13 matmul); only the nonlinear terms
# (gastric emptying, production, renal excretion, uptake) are spelled out.
_NONLINEAR = ("kmax", "kmin", "b", "d", "kp1", "kp2", "kp3", "ke1", "ke2", "Vm0", "Vmx", "Km0")


def linear_form(p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """A's entries ``(rows [K], cols [K], values [B,K])``, constant ``c [B,13]`` and the
    packed nonlinear constants ``q [12,B]``."""
    B = p["BW"].shape[0]
    entries = {
        (0, 0): -p["kmax"], (1, 0): p["kmax"], (2, 2): -p["kabs"],
        (3, 2): p["f"] * p["kabs"] / p["BW"], (3, 3): -p["k1"], (3, 4): p["k2"], (4, 3): p["k1"], (4, 4): -p["k2"],
        (5, 5): -(p["m2"] + p["m4"]), (5, 9): p["m1"], (5, 10): p["ka1"], (5, 11): p["ka2"],
        (6, 6): -p["p2u"], (6, 5): p["p2u"] / p["Vi"], (7, 7): -p["ki"], (7, 5): p["ki"] / p["Vi"],
        (8, 8): -p["ki"], (8, 7): p["ki"], (9, 9): -(p["m1"] + p["m30"]), (9, 5): p["m2"],
        (10, 10): -(p["ka1"] + p["kd"]), (11, 10): p["kd"], (11, 11): -p["ka2"], (12, 12): -p["ksc"], (12, 3): p["ksc"],
    }
    dev = p["BW"].device
    rows = torch.tensor([i for i, _ in entries], dtype=torch.long, device=dev)
    cols = torch.tensor([j for _, j in entries], dtype=torch.long, device=dev)
    values = torch.stack(list(entries.values()), 1)
    c = torch.zeros(B, N_STATES, dtype=values.dtype, device=dev)
    c[:, 3] = -p["Fsnc"]
    c[:, 6] = -p["p2u"] * p["Ib"]
    return rows, cols, values, c, torch.stack([p[k] for k in _NONLINEAR])


@torch.jit.script
def _fast_field(x: Tensor, rows: Tensor, cols: Tensor, values: Tensor, c: Tensor, q: Tensor, dbar: Tensor,
                nonneg: Tensor) -> Tensor:
    kmax, kmin, b, d, kp1, kp2, kp3, ke1, ke2, vm0, vmx, km0 = q.unbind(0)
    qsto = x[:, 0] + x[:, 1]
    has_meal = dbar > 0
    dsafe = torch.where(has_meal, dbar, torch.ones_like(dbar))
    kgut = kmin + (kmax - kmin) * 0.5 * (torch.tanh(2.5 / (1.0 - b) / dsafe * (qsto - b * dsafe))
                                         - torch.tanh(2.5 / d / dsafe * (qsto - d * dsafe)) + 2.0)
    emptying = torch.where(has_meal, kgut, kmax) * x[:, 1]
    gp = x[:, 3]
    plasma = torch.clamp(kp1 - kp2 * gp - kp3 * x[:, 8], min=0.0) - ke1 * torch.clamp(gp - ke2, min=0.0)
    uptake = (vm0 + vmx * x[:, 6]) * x[:, 4] / (km0 + x[:, 4])
    nonlin = torch.stack([-emptying, emptying, plasma, -uptake], 1)
    dx = torch.index_add(c, 1, rows, values * x[:, cols])
    dx = torch.cat([dx[:, :1], dx[:, 1:5] + nonlin, dx[:, 5:]], 1)
    return torch.where(nonneg & (x < 0), torch.zeros_like(dx), dx)


@torch.jit.script
def _rk4_minute(x: Tensor, rows: Tensor, cols: Tensor, values: Tensor, c: Tensor, q: Tensor, dbar: Tensor,
                nonneg: Tensor, substeps: int) -> Tensor:
    h = 1.0 / substeps
    for _ in range(substeps):
        k1 = _fast_field(x, rows, cols, values, c, q, dbar, nonneg)
        k2 = _fast_field(x + 0.5 * h * k1, rows, cols, values, c, q, dbar, nonneg)
        k3 = _fast_field(x + 0.5 * h * k2, rows, cols, values, c, q, dbar, nonneg)
        k4 = _fast_field(x + h * k3, rows, cols, values, c, q, dbar, nonneg)
        x = x + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return x


@torch.jit.script
def _minute(x: Tensor, meal: Tensor, announced_g: Tensor, insulin_pmol: Tensor, rows: Tensor, cols: Tensor,
            values: Tensor, c0: Tensor, q: Tensor, nonneg: Tensor, substeps: int) -> Tuple[Tensor, Tensor]:
    """One minute: meal bookkeeping between minutes (announcements queue, eaten at 5 g/min),
    then RK4 with the minute's inputs held constant."""
    planned, last_cho, last_qsto, foodtaken, eating = meal.unbind(0)
    zeros = torch.zeros_like(planned)
    planned = planned + announced_g
    to_eat = torch.where(planned > 0, torch.clamp(planned, max=5.0), zeros)  # EAT_RATE_G_PER_MIN
    planned = torch.clamp(planned - to_eat, min=0.0)
    starts = (to_eat > 0) & (last_cho <= 0)
    last_qsto = torch.where(starts, x[:, 0] + x[:, 1], last_qsto)
    foodtaken = torch.where(starts, zeros, foodtaken)
    is_eating = (eating > 0) | starts
    foodtaken = foodtaken + torch.where(is_eating, to_eat, zeros)
    is_eating = is_eating & ~((to_eat <= 0) & (last_cho > 0))
    # Like simglucose, Dbar adds the grams eaten to the stomach content in mg (x1000).
    dbar = last_qsto + foodtaken * 1000.0
    inputs = torch.zeros_like(c0)
    inputs[:, 0] = to_eat * 1000.0
    inputs[:, 10] = insulin_pmol
    x = _rk4_minute(x, rows, cols, values, c0 + inputs, q, dbar, nonneg, substeps)
    return x, torch.stack([planned, to_eat, last_qsto, foodtaken, is_eating.to(x.dtype)])


@dataclass
class SimResult:
    gsub: Tensor  # [B, T+1] subcutaneous glucose (mg/dL) at minutes 0..T
    states: Tensor | None  # [B, T+1, 13] when kept
    eaten_g: Tensor  # [B, T] grams eaten in each minute (announcements spread at 5 g/min)
    insulin_u_per_min: Tensor  # [B, T] insulin delivered, including what a policy added


class UVAPadovaSimulator:
    """Simulates a :class:`PatientBatch` minute by minute under meal and insulin inputs."""

    def __init__(self, patients: PatientBatch, substeps: int = 1):
        if substeps < 1:
            raise ConfigError("substeps", substeps, hint="at least one RK4 step per minute")
        self.patients, self.substeps = patients, int(substeps)

    def simulate(self, meals_g: Tensor, insulin_u_per_min: Tensor, x0: Tensor | None = None,
                 keep_states: bool = True, policy=None) -> SimResult:
        """Runs ``T`` minutes. ``meals_g`` and ``insulin_u_per_min`` are ``[B, T]`` (or ``[T]``, shared).

        ``policy(minute, gsub[B]) -> Tensor[B] | None`` may add insulin (U, delivered within
        that minute) from the glucose the patient's sensor would see: correction boluses.
        """
        p, B = self.patients.params, len(self.patients)
        ref = self.patients.x0
        meals = _inputs("meals_g", meals_g, B, ref)
        insulin = _inputs("insulin_u_per_min", insulin_u_per_min, B, ref)
        if policy is not None:
            insulin = insulin.clone()
        if meals.shape != insulin.shape:
            raise ConfigError("inputs", f"meals {tuple(meals.shape)} vs insulin {tuple(insulin.shape)}",
                              hint="give meals and insulin for the same minutes")
        if bool((meals < 0).any()) or bool((insulin < 0).any()):
            raise ConfigError("inputs", "negative meal grams or insulin", hint="inputs must be >= 0")
        x = (ref if x0 is None else x0.to(ref)).clone()
        if x.shape != (B, N_STATES):
            raise ConfigError("x0", tuple(x.shape), hint=f"expected ({B}, {N_STATES})")
        T = meals.shape[1]
        vg = p["Vg"]
        gsub = torch.empty(B, T + 1, dtype=x.dtype, device=x.device)
        states = torch.empty(B, T + 1, N_STATES, dtype=x.dtype, device=x.device) if keep_states else None
        eaten = torch.empty(B, T, dtype=x.dtype, device=x.device)
        gsub[:, 0] = x[:, 12] / vg
        if states is not None:
            states[:, 0] = x
        zeros = torch.zeros(B, dtype=x.dtype, device=x.device)
        # Meal state [5, B]: planned grams, grams eaten last minute, stomach content at the
        # meal's start (mg), grams eaten since, eating flag.
        meal = torch.stack([zeros, zeros, x[:, 0] + x[:, 1], zeros, zeros])
        nonneg = nonneg_mask(x.device)
        rows, cols, values, c0, q = linear_form(p)
        to_pmol = 6000.0 / p["BW"]
        for t in range(T):
            if policy is not None:
                extra = policy(t, gsub[:, t])
                if extra is not None:
                    insulin[:, t] += extra
            x, meal = _minute(x, meal, meals[:, t], insulin[:, t] * to_pmol, rows, cols, values, c0, q, nonneg, self.substeps)
            eaten[:, t] = meal[1]
            gsub[:, t + 1] = x[:, 12] / vg
            if states is not None:
                states[:, t + 1] = x
        return SimResult(gsub, states, eaten, insulin)


def _inputs(name: str, value, B: int, ref: Tensor) -> Tensor:
    v = torch.as_tensor(value, dtype=ref.dtype, device=ref.device)
    if v.dim() == 1:
        v = v.expand(B, -1)
    if v.dim() != 2 or v.shape[0] != B:
        raise ConfigError(name, tuple(v.shape), hint=f"expected [{B}, minutes] or [minutes]")
    if not bool(torch.isfinite(v).all()):
        raise ConfigError(name, "non-finite values", hint="inputs must be finite")
    return v

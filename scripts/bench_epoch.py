"""Wall time of one training epoch on PhysioNet 2012 set A: twinode against a latent_ode-style
reference of the same size, side by side in one process, with a roofline line.

- twinode: the real training path. Hydra composes ``experiment=physionet2012`` (data config
  ``physionet2012``, the anchored twin with its PhysioNet overrides, solver rk4 1 h; ``--experiment
  physionet2012_latent`` for the latent ODE twin), the
  TwinDataModule's train split feeds a Lightning Trainer fitting TwinLitModule for one epoch
  (AdamW, gradient clipping, NumericalGuard; no validation, checkpoints or logger). The epoch
  time runs from the epoch's start to its end: data loading, forward, backward and optimiser
  steps over every train batch.
- reference (plain torch + torchdiffeq, nothing from twinode's model code): latent_ode
  (Rubanova et al. 2019) as its repository runs PhysioNet: each batch re-laid on the sorted
  union of its observation times (quantised to 0.016 h, about a minute, as in the
  repository README's PhysioNet command; 0.1 h is run_models.py's default), an ODE-RNN
  recognition network run backwards over that union (the hidden ODE
  solved between consecutive union times, a GRU update where a subject has an observation),
  the posterior of z0 at the first union time, the generative ODE solved with torchdiffeq
  dopri5 (rtol 1e-3, atol 1e-4) over the whole union, a Gaussian decoder to every channel,
  masked likelihood + KL + mortality BCE, Adam. Widths (latent, field hidden, encoder hidden)
  are read from the twinode config. Its batches come from the same DataLoader (Batch ->
  union layout is part of its timed step, as latent_ode's collate is part of its loading).
  Its epoch is too slow to run whole: K batches are timed after one warm-up batch and the
  mean is extrapolated to the epoch's batch count.

    .venv/bin/python scripts/bench_epoch.py [--quick] [--json out.json] [--threads 1]
        [--device cpu|cuda] [--data-dir ../shared/data/physionet2012] [--ref-batches 5]
        [--refs euler:0.016 euler:0.1 dopri5:0.1] [--override KEY=VALUE ...] [--experiment physionet2012_latent]

Reference variants ``ENCODER:QUANT_H``: ``euler`` is the repository's recognition solver
(Euler on a sub-grid of span/50, one Euler step for shorter gaps), ``dopri5`` solves each
gap with dopri5 (rtol 1e-3, atol 1e-4) instead; ``QUANT_H`` rounds the times to that many
hours before the union is built (0.016 in the README's PhysioNet command, which on
PhysioNet's one-minute clock is nearly exact; 0.1 is run_models.py's default; 0: exact
times, as twinode sees them). The union, and so the reference's cost, grows with the resolution.
``--smoke`` runs the same code on the embedded synthetic cohort with tiny widths (tests).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torchdiffeq
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchlib sits beside this script
import benchlib  # noqa: E402
from benchlib import count_flops, sync  # noqa: E402
from twinode.config_dir import config_dir
from twinode.data.collate import Batch
from twinode.errors import TwinodeError
from twinode.training.pipeline import build_twin

REPO = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-3, 1e-4  # latent_ode's generative-ODE tolerances
FULL_REFS = ("euler:0.016", "euler:0.1", "dopri5:0.1")
QUICK_REFS = ("euler:0.016", "euler:0.1")
SMOKE = ["data=synthetic_icu", "data.source.n_patients=48", "data.batch_size=16", "data.task=interpolation",
         "model.twin.latent_dim=4", "model.twin.hidden=8", "model.twin.encoder_hidden=8", "model.twin.encoder=ode_rnn",
         "solver.step=4.0"]


# ---- the latent_ode-style reference ----

def union_layout(b: Batch, quant_h: float, time_scale_h: float):
    """Batch -> latent_ode's layout: sorted union of the batch's observation times ``ts [T]``
    (scaled by ``time_scale_h``), the history on that grid (encoder input) and history +
    targets on it (likelihood), ``[B, T, D]`` each; values sharing a (quantised) time are averaged."""
    B, D = b.hist_x.shape[0], b.hist_x.shape[2]
    parts = [(b.hist_t, b.hist_x, b.hist_m, True), (b.tgt_t, b.tgt_x, b.tgt_m, False)]
    rows, times = [], []
    for t, x, m, is_hist in parts:
        keep = m.sum(-1) > 0  # padding and rows without a measurement carry nothing
        tt = t[keep]
        if quant_h > 0:
            tt = torch.round(tt / quant_h) * quant_h
        rows.append((keep.nonzero()[:, 0], x[keep] * m[keep], m[keep], is_hist))
        times.append(tt)
    ts, inverse = torch.unique(torch.cat(times), sorted=True, return_inverse=True)
    T = ts.shape[0]
    sums = {k: torch.zeros(2, B * T, D, device=ts.device) for k in ("enc", "obs")}
    start = 0
    for (subject, xm, m, is_hist), tt in zip(rows, times):
        flat = subject * T + inverse[start: start + len(tt)]
        start += len(tt)
        for k in (("enc", "obs") if is_hist else ("obs",)):
            sums[k][0].index_add_(0, flat, xm)
            sums[k][1].index_add_(0, flat, m)
    out = {}
    for k, (xs, ms) in sums.items():
        out[k + "_x"] = (xs / ms.clamp(min=1.0)).view(B, T, D)
        out[k + "_m"] = (ms > 0).to(xs.dtype).view(B, T, D)
    return ts / time_scale_h, out


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class CountedField(nn.Module):
    """torchdiffeq's ``f(t, y)`` around an MLP, counting evaluations."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.nfe = net, 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        return self.net(y)


class ReferenceLatentODE(nn.Module):
    """latent_ode's model on the union of the batch's times (see the module docstring)."""

    def __init__(self, n_channels: int, latent: int, hidden: int, enc_hidden: int, field_layers: int, encoder: str):
        super().__init__()
        self.encoder_solver = encoder
        self.enc_ode = CountedField(mlp([enc_hidden, enc_hidden, enc_hidden]))
        self.gru = nn.GRUCell(2 * n_channels, enc_hidden)
        self.to_q = nn.Linear(enc_hidden, 2 * latent)
        self.gen_ode = CountedField(mlp([latent] + [hidden] * field_layers + [latent]))
        self.decoder = mlp([latent, hidden, 2 * n_channels])
        self.classifier = mlp([latent, hidden, 1])
        self.latent, self.n_channels = latent, n_channels
        for mod in self.modules():  # latent_ode's utils.init_network_weights
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.1)
                nn.init.zeros_(mod.bias)

    def encode(self, ts: Tensor, enc_x: Tensor, enc_m: Tensor) -> tuple[Tensor, Tensor]:
        """ODE-RNN backwards from the last union time to the first (latent_ode's run_odernn)."""
        B = enc_x.shape[0]
        h = enc_x.new_zeros(B, self.gru.hidden_size)
        tl = ts.tolist()  # control flow on host floats: no device sync per gap
        min_step = (tl[-1] - tl[0]) / 50
        prev = tl[-1] + 0.01
        has_obs = enc_m.sum(-1) > 0
        inputs = torch.cat([enc_x, enc_m], -1)
        for i in range(len(tl) - 1, -1, -1):
            gap = prev - tl[i]
            if self.encoder_solver == "dopri5":
                grid = torch.tensor([prev, tl[i]], device=ts.device, dtype=ts.dtype)
                h_ode = torchdiffeq.odeint(self.enc_ode, h, grid, rtol=RTOL, atol=ATOL, method="dopri5")[-1]
            elif gap < min_step:  # the repository's single Euler step for short gaps
                h_ode = h + self.enc_ode(ts[i], h) * (tl[i] - prev)
            else:
                n = max(2, int(gap / min_step))
                grid = torch.linspace(prev, tl[i], n, device=ts.device, dtype=ts.dtype)
                h_ode = torchdiffeq.odeint(self.enc_ode, h, grid, method="euler")[-1]
            h = torch.where(has_obs[:, i:i + 1], self.gru(inputs[:, i], h_ode), h_ode)
            prev = tl[i]
        q = self.to_q(h)
        return q[:, : self.latent], q[:, self.latent:].clamp(-8.0, 4.0)

    def loss(self, ts: Tensor, lay: dict, outcome: Tensor) -> Tensor:
        mean, log_std = self.encode(ts, lay["enc_x"], lay["enc_m"])
        z0 = mean + torch.exp(log_std) * torch.randn_like(mean)
        z = torchdiffeq.odeint(self.gen_ode, z0, ts, rtol=RTOL, atol=ATOL, method="dopri5").transpose(0, 1)
        out = self.decoder(z)
        mu, ls = out[..., : self.n_channels], out[..., self.n_channels:].clamp(-5.0, 5.0)
        x, m = lay["obs_x"], lay["obs_m"]
        nll = ((0.5 * ((x - mu) * torch.exp(-ls)) ** 2 + ls + 0.5 * math.log(2 * math.pi)) * m).sum()
        kl = 0.5 * (mean ** 2 + torch.exp(2 * log_std) - 2 * log_std - 1).sum()
        loss = (nll + kl) / m.sum().clamp(min=1.0)
        known = torch.isfinite(outcome)
        if bool(known.any()):
            logit = self.classifier(z0).squeeze(-1)[known]
            loss = loss + nn.functional.binary_cross_entropy_with_logits(logit, outcome[known])
        return loss


def reference_step(model: ReferenceLatentODE, opt, b: Batch, quant_h: float, time_scale_h: float) -> tuple[float, int]:
    ts, lay = union_layout(b, quant_h, time_scale_h)
    opt.zero_grad(set_to_none=True)
    loss = model.loss(ts, lay, b.outcome)
    loss.backward()
    opt.step()
    return float(loss.detach()), ts.shape[0]


def time_reference(dm, cfg, device: str, encoder: str, k: int, quant_h: float, flops: bool) -> dict:
    tw = cfg.model.twin
    torch.manual_seed(cfg.seed)
    model = ReferenceLatentODE(dm.dims["n_measurements"], tw.latent_dim, tw.hidden, tw.encoder_hidden,
                               tw.field_layers, encoder).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.model.lit.lr)
    scale = dm.spec.window_hours
    loader = dm.train_dataloader()
    it = iter(loader)
    warm = next(it).to(device)  # untimed; FlopCounterMode's dispatch makes it ~10x slower, so optional
    n_flops = None
    if flops:
        n_flops = count_flops(lambda: reference_step(model, opt, warm, quant_h, scale))
    else:
        reference_step(model, opt, warm, quant_h, scale)
    secs, unions, nfe, loss = [], [], [], math.nan
    for _ in range(min(k, len(loader) - 1)):
        model.gen_ode.nfe = model.enc_ode.nfe = 0
        sync(device)
        t0 = time.perf_counter()
        b = next(it).to(device)  # data loading is part of the step, as in twinode's epoch
        loss, T = reference_step(model, opt, b, quant_h, scale)
        sync(device)
        secs.append(time.perf_counter() - t0)
        unions.append(T)
        nfe.append(model.gen_ode.nfe)
    n = len(loader)
    epoch = statistics.fmean(secs) * n
    grid = f"times quantised to {quant_h:g} h" if quant_h > 0 else "exact times"
    return {"name": f"latent_ode-style reference, {encoder} encoder, {grid} (extrapolated from {len(secs)} batches)",
            "batch": dm.batch_size, "batches": n, "timed_batches": len(secs), "seconds": epoch,
            "per_second": len(loader.dataset) / epoch, "error": loss, "step_ms_median": 1e3 * statistics.median(secs),
            "step_ms_min": 1e3 * min(secs), "step_ms_max": 1e3 * max(secs), "encoder": encoder, "quantization_h": quant_h,
            "flops_per_step": n_flops, "union_times_mean": statistics.fmean(unions),
            "generative_nfe_forward_mean": statistics.fmean(nfe), "params": sum(p.numel() for p in model.parameters())}


# ---- twinode: one Lightning epoch of the real objective ----

class EpochTimer(L.Callback):
    def __init__(self, device: str):
        self.device, self.steps, self.losses, self.epoch = device, [], [], math.nan

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        sync(self.device)
        self.t0 = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        sync(self.device)
        self.s0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        sync(self.device)
        self.steps.append(time.perf_counter() - self.s0)
        self.losses.append(float(outputs["loss"]))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.epoch = time.perf_counter() - self.t0


def time_twinode(dm, cfg, device: str, max_batches: int | None) -> dict:
    L.seed_everything(cfg.seed, workers=True)
    twin = build_twin(cfg, dm.dims, dm.spec)
    lit = instantiate(cfg.model.lit)(twin=twin, metadata={}).to(device)
    probe = next(iter(dm.train_dataloader())).to(device)

    def step():
        lit._objective(probe, sample=True)["loss"].backward()
    flops = count_flops(step)  # also warms up the twin's code paths
    lit.zero_grad(set_to_none=True)
    timer = EpochTimer(device)
    n = len(dm.train_dataloader())
    limit = n if not max_batches else min(max_batches, n)
    trainer = instantiate(cfg.trainer, accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
                          max_epochs=1, limit_train_batches=limit, limit_val_batches=0, num_sanity_val_steps=0,
                          logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          callbacks=[instantiate(cfg.callbacks.numerical_guard), timer])
    trainer.fit(lit, datamodule=dm)
    epoch = timer.epoch * n / len(timer.steps)
    extrapolated = len(timer.steps) < n
    name = f"twinode ({cfg.solver.method} {cfg.solver.step:g} h, Lightning)" + (f" (extrapolated from {len(timer.steps)} batches)" if extrapolated else "")
    return {"name": name, "batch": dm.batch_size, "batches": n, "timed_batches": len(timer.steps), "seconds": epoch,
            "per_second": len(dm.train_windows) / epoch, "error": timer.losses[-1],
            "step_ms_median": 1e3 * statistics.median(timer.steps), "step_ms_min": 1e3 * min(timer.steps),
            "step_ms_max": 1e3 * max(timer.steps), "flops_per_step": flops,
            "params": sum(p.numel() for p in lit.twin.parameters())}


# ---- driver ----

def compose_cfg(args, data_root: Path, out: Path):
    over = [f"paths.data_dir={data_root}", f"paths.output_dir={out}", f"paths.root_dir={out}", "logger=none",
            f"cpu_threads={args.threads}"]
    exp = [f"experiment={args.experiment}"]
    over += (exp + SMOKE if args.smoke else exp) + list(args.override)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=over)


def prepare_data(data_dir: Path, out: Path) -> Path:
    """Import the challenge archive into ``out/physionet2012_meds`` (the tensorized cohort is
    cached by MedsSource as in training)."""
    from twinode.data.importers.physionet2012 import import_physionet2012

    archive, outcomes = data_dir / "set-a.tar.gz", data_dir / "Outcomes-a.txt"
    missing = [str(p) for p in (archive, outcomes) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"PhysioNet 2012 set A not found: missing {', '.join(missing)}; pass --data-dir "
                                "with set-a.tar.gz and Outcomes-a.txt")
    import_physionet2012(archive, outcomes, out / "physionet2012_meds")
    return out


TABLE = [("model", "name"), "batch", "batches", ("epoch s", "seconds", ".1f"), ("patients/s", "per_second", ".1f"),
         ("step ms (median)", "step_ms_median", ".0f"), ("union times (mean)", "union_times_mean", ".0f"),
         ("final train loss", "error", ".3f")]


def default_data_dir() -> Path:
    """../shared/data/physionet2012 beside the repository (or shared/ inside it, as on a device copy)."""
    options = [REPO.parent / "shared" / "data" / "physionet2012", REPO / "shared" / "data" / "physionet2012"]
    return next((p for p in options if (p / "set-a.tar.gz").is_file()), options[0])


def parse_ref(text: str) -> tuple[str, float]:
    enc, _, quant = text.partition(":")
    if enc not in ("euler", "dopri5") or not quant:
        raise SystemExit(f"error: --refs entry {text!r}: expected ENCODER:QUANT_H with ENCODER euler or dopri5")
    return enc, float(quant)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    benchlib.common_args(ap)  # --json, --quick (twinode: 8 batches, reference: 1 batch), --threads, --device
    ap.add_argument("--smoke", action="store_true", help="embedded synthetic cohort, tiny widths (tests)")
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="holds set-a.tar.gz and Outcomes-a.txt")
    ap.add_argument("--ref-batches", type=int, default=5, help="reference batches timed after one warm-up")
    ap.add_argument("--refs", nargs="+", metavar="ENCODER:QUANT_H",
                    help="reference variants: encoder solver (euler = the repository's, dopri5) and time "
                    f"quantisation in hours (0.016 = the README's PhysioNet command, 0.1 = run_models.py's default, 0 = exact times); "
                    f"default {' '.join(FULL_REFS)} ({' '.join(QUICK_REFS)} with --quick)")
    ap.add_argument("--override", nargs="*", default=[], help="extra Hydra overrides for the twinode config")
    ap.add_argument("--experiment", default="physionet2012",
                    help="twinode experiment config (physionet2012: the anchored twin; physionet2012_latent: the latent ODE)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    info = benchlib.machine_info(args.threads, args.device)
    info.update(torchdiffeq=torchdiffeq.__version__, lightning=L.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data_root = Path(tmp) if args.smoke else prepare_data(Path(args.data_dir), Path(tmp))
            cfg = compose_cfg(args, data_root, Path(tmp) / "out")
            dm = instantiate(cfg.data)
            dm.setup("fit")
        except (FileNotFoundError, TwinodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return getattr(exc, "exit_code", 2)
        quick = args.quick or args.smoke
        rows = [time_twinode(dm, cfg, args.device, 2 if args.smoke else 8 if args.quick else None)]
        refs = args.refs or (QUICK_REFS if quick else FULL_REFS)
        for i, (enc, quant_h) in enumerate(parse_ref(r) for r in refs):
            # FLOPs of the first variant only: FlopCounterMode makes a union-of-times step ~10x slower.
            rows.append(time_reference(dm, cfg, args.device, enc, 1 if quick else args.ref_batches, quant_h,
                                       flops=not quick and i == 0))
    mm = benchlib.matmul_flops(args.device)
    info["loadavg_end"] = list(os.getloadavg())
    tw = cfg.model.twin
    info["model"] = {"latent": tw.latent_dim, "field_hidden": tw.hidden, "field_layers": tw.field_layers,
                     "encoder_hidden": tw.encoder_hidden, "encoder": tw.encoder, "task": cfg.data.task,
                     "solver": f"{cfg.solver.method} {cfg.solver.step} h", "train_patients": len(dm.train_windows)}
    rows.append({"name": "torch.mm 2048x2048 float32 (best of 5)", "batch": None, "seconds": 2.0 * 2048 ** 3 / mm,
                 "per_second": mm, "error": None})
    # Roofline: FLOPs of one step (FlopCounterMode, forward + backward) / the median step time.
    roofline = {r["name"]: benchlib.roofline(r["flops_per_step"], r["step_ms_median"] / 1e3, mm)
                for r in rows if r.get("flops_per_step")}
    ratio = {r["name"]: r["seconds"] / rows[0]["seconds"] for r in rows[1:] if "batches" in r}
    print(f"machine: {info}")
    print(benchlib.markdown_table([r for r in rows if "batches" in r], TABLE))
    for name, value in ratio.items():
        print(f"ratio {name} / twinode: {value:.1f}x")
    for name, r in roofline.items():
        print(f"{name}: " + benchlib.roofline_line(r["flops"], r["seconds"], mm, unit="training step (median)"))
    if args.json:
        benchlib.write_json(args.json, info, rows, extra={"ratio_reference_over_twinode": ratio, "roofline": roofline})
    return 0


if __name__ == "__main__":
    sys.exit(main())

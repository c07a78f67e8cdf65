"""The training loop: Algorithm 1 of Goodfellow et al. (k discriminator steps, then one
generator step), with the modern options (hinge loss, R1, DiffAugment, EMA), resumable
exactly from its checkpoints.

A step keeps the host ahead of the device: its random numbers are drawn in one go on the
device (``draw_step``), nothing is copied to or read from the device inside it (losses
stay tensors until a log line), the optimizers and the EMA use multi-tensor kernels, and
with ``--compile`` every network call goes through the compiled modules.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model_store import Generator, autocast, autocast_dtype, build_generator
from training.augment import diff_augment, num_params
from training.config import ConfigError, TrainConfig
from training.data import ImageDataset
from training.discriminators import build_discriminator
from training.distributed import Dist, any_rank
from training.ema import ema_beta, update_ema, with_standing_stats
from training.losses import d_loss_fake, d_loss_real, g_loss, r1_penalty
from training.resume import resume_trainer, save_trainer
from training.samples import sample_grid

# cuBLAS is deterministic only with one of these workspace settings (CUDA docs); set
# before the first cuBLAS call, so the trainer sets it before it touches CUDA.
CUBLAS_WORKSPACES = (":4096:8", ":16:8")


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.enabled:
        name = f"cuda:{d.local_rank}"
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def use_deterministic_algorithms(device: torch.device) -> None:
    """Deterministic kernels, and on CUDA the cuBLAS workspace they need (set if unset;
    a value cuBLAS would not make deterministic is refused)."""
    if device.type == "cuda":
        workspace = os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACES[0])
        if workspace not in CUBLAS_WORKSPACES:
            raise ConfigError(
                f"--deterministic on CUDA needs CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACES[0]} "
                f"(or {CUBLAS_WORKSPACES[1]}), but it is {workspace!r}"
            )
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def stream_seed(seed: int, rank: int, step: int, stream: str) -> int:
    """A seed for one random stream at one step: a pure function of its arguments, so the
    draws of step n are the same after a resume, whatever device or process count saved it."""
    key = f"{seed}/{rank}/{step}/{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class StepDraws(NamedTuple):
    """Every random number one step uses (B = batch size, k = discriminator steps)."""

    real: torch.Tensor  # [k, B] rows of the data shown to D
    labels: torch.Tensor  # [B] rows whose classes G is asked for in its step
    z: torch.Tensor  # [k + 1, B, z_dim] latents: one batch per D step, then G's
    aug_d: torch.Tensor  # [k, 2B, P] DiffAugment uniforms for reals then fakes
    aug_g: torch.Tensor  # [B, P] DiffAugment uniforms for G's step


class Trainer:
    """Owns the networks, optimizers and counters of one training run."""

    def __init__(self, cfg: TrainConfig, dataset: ImageDataset, d: Dist | None = None) -> None:
        d = d or Dist()
        self.cfg, self.dist = cfg, d
        self.run_dir = Path(cfg.run_dir)
        self.device = resolve_device(cfg.device, d)
        if cfg.deterministic:
            use_deterministic_algorithms(self.device)
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels
        self.amp = autocast_dtype(cfg.amp, self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.setup_data(dataset)
        self.setup_networks()
        self.gen = torch.Generator(self.device)  # reseeded every step: see draw_step
        self.aug_params = num_params(cfg.augment)
        self.step, self.images_seen, self.wall_time_s = 0, 0, 0.0
        self.saved_step = -1  # the step of the last checkpoint this run wrote or read

    # --- set-up -------------------------------------------------------------------------

    def setup_data(self, ds: ImageDataset) -> None:
        cfg = self.cfg
        ds = ds.with_skin_tones(cfg.skin_tones)
        self.dataset = ds
        self.channels, self.resolution = int(ds.images.shape[1]), int(ds.images.shape[-1])
        self.alpha = "premultiplied" if self.channels == 4 else "none"
        self.num_classes = len(ds.class_names) if cfg.conditional and len(ds.class_names) > 1 else 0
        real = ds.to_float(premultiply=self.channels == 4)  # [N, C, R, R] in [-1, 1]
        self.real = real.to(self.device).contiguous(memory_format=self.memory_format)
        self.labels = ds.labels.to(self.device)
        self.sample_weights: torch.Tensor | None = None  # None: every image equally likely
        if cfg.balance:
            counts = torch.bincount(ds.labels, minlength=len(ds.class_names)).clamp_min(1)
            self.sample_weights = (1.0 / counts[ds.labels]).to(self.device)

    def setup_networks(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        shape = {
            "num_classes": self.num_classes,
            "channels": self.channels,
            "resolution": self.resolution,
        }
        try:
            g = build_generator(
                cfg.arch, {"z_dim": cfg.z_dim, **shape, **cfg.generator_overrides()}
            )
            d = build_discriminator(cfg.d_arch, {**shape, **cfg.discriminator_overrides()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--g-config/--d-config: {exc}") from None
        self.G: Generator = g.to(self.device, memory_format=self.memory_format)
        self.D: nn.Module = d.to(self.device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.opt_g = self.make_optimizer(self.G, cfg.lr_g)
        self.opt_d = self.make_optimizer(self.D, cfg.lr_d)
        # G_step/D_step: the modules that train (DDP-wrapped when distributed); G_fwd/D_fwd:
        # the same networks where no gradient reaches their weights (fakes for D, D in G's
        # step). With --compile, every one of them is a compiled module.
        self.G_fwd, self.D_fwd = self.compiled(self.G), self.compiled(self.D)
        self.G_step: nn.Module = self.G_fwd
        self.D_step: nn.Module = self.D_fwd
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_step = self.compiled(DistributedDataParallel(self.G, device_ids=ids))
            self.D_step = self.compiled(DistributedDataParallel(self.D, device_ids=ids))

    def compiled(self, module: nn.Module) -> nn.Module:
        if not self.cfg.compile:
            return module
        return torch.compile(module, mode=self.cfg.compile_mode)

    def make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Adam or SGD, fused: one kernel for the whole update instead of one per tensor
        (on 2 CPU cores fused Adam took 17 ms per G+D update where foreach took 23)."""
        cfg = self.cfg
        if cfg.optimizer == "adam":
            betas = (cfg.beta1, cfg.beta2)
            return torch.optim.Adam(module.parameters(), lr=lr, betas=betas, fused=True)
        return torch.optim.SGD(module.parameters(), lr=lr, momentum=cfg.beta1, fused=True)

    # --- one step -----------------------------------------------------------------------

    def autocast(self) -> Any:
        return autocast(self.device, self.amp)

    def draw_step(self) -> StepDraws:
        """This step's random numbers, drawn on the device from a generator seeded by
        (seed, rank, step); the global RNG (dropout) is seeded the same way."""
        cfg, b, k = self.cfg, self.cfg.batch_size, self.cfg.d_steps
        rank, dev = self.dist.rank, self.device
        torch.manual_seed(stream_seed(cfg.seed, rank, self.step, "global"))
        gen = self.gen.manual_seed(stream_seed(cfg.seed, rank, self.step, "draws"))
        rows = (k + 1) * b
        if self.sample_weights is None:
            idx = torch.randint(len(self.labels), (rows,), device=dev, generator=gen)
        else:
            idx = torch.multinomial(self.sample_weights, rows, replacement=True, generator=gen)
        z = torch.randn(k + 1, b, cfg.z_dim, device=dev, generator=gen)
        aug = torch.rand((2 * k + 1) * b, self.aug_params, device=dev, generator=gen)
        return StepDraws(
            real=idx[: k * b].view(k, b),
            labels=idx[k * b :],
            z=z,
            aug_d=aug[: 2 * k * b].view(k, 2 * b, -1),
            aug_g=aug[2 * k * b :],
        )

    def augment(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.augment, params) if self.aug_params else x

    def class_of(self, rows: torch.Tensor) -> torch.Tensor | None:
        return self.labels[rows] if self.num_classes else None

    def d_step(
        self, real: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor, aug: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        cfg, b = self.cfg, len(real)
        with torch.no_grad(), self.autocast():
            fake = self.G_fwd(z, labels)  # fakes of the reals' classes
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        real = real.detach().requires_grad_(cfg.r1_gamma > 0)
        # Reals and fakes pass through D separately, as in the papers: BatchNorm in
        # Radford's D sees one kind per batch, and spectral norm's power iteration runs
        # once per pass, as the recipe had it (one joint pass was tried: within a few
        # percent on the CPU, slightly worse FD early on, and it changed that count).
        # Under DDP the first backward skips the gradient all-reduce, the second reduces
        # the sum.
        with self.D_step.no_sync() if self.dist.enabled else contextlib.nullcontext():
            with self.autocast():
                logits_real = self.D_step(self.augment(real, aug[:b]), labels).float()
            loss_real = d_loss_real(cfg.loss, logits_real)
            r1 = self.r1(logits_real, real)
            (loss_real + cfg.r1_gamma / 2 * r1).backward()
        with self.autocast():
            logits_fake = self.D_step(self.augment(fake, aug[b:]), labels).float()
        loss_fake = d_loss_fake(cfg.loss, logits_fake)
        loss_fake.backward()
        self.opt_d.step()
        return {
            "loss_d_real": loss_real.detach(),
            "loss_d_fake": loss_fake.detach(),
            "logit_real": logits_real.detach().mean(),
            "logit_fake": logits_fake.detach().mean(),
            "r1": r1.detach(),
        }

    def r1(self, logits_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.cfg.r1_gamma > 0:
            return r1_penalty(logits_real, real)
        return torch.zeros((), device=self.device)

    def g_step(
        self, labels: torch.Tensor | None, z: torch.Tensor, aug: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            fake = self.G_step(z, labels)
            loss = g_loss(self.cfg.loss, self.D_fwd(self.augment(fake, aug), labels).float())
        loss.backward()
        self.opt_g.step()
        return {"loss_g": loss.detach()}

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        lr_scale = cfg.lr_decay**self.step  # from the step, so a resume matches exactly
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_scale
        draws = self.draw_step()
        stats: dict[str, torch.Tensor] = {}
        for i in range(cfg.d_steps):
            rows = draws.real[i]
            stats = self.d_step(self.real[rows], self.class_of(rows), draws.z[i], draws.aug_d[i])
        # Fake classes follow the data's class distribution (rows drawn as for reals).
        stats |= self.g_step(self.class_of(draws.labels), draws.z[-1], draws.aug_g)
        self.step += 1
        self.images_seen += cfg.batch_size * self.dist.world * cfg.d_steps  # reals shown to D
        beta = ema_beta(
            cfg.batch_size * self.dist.world, cfg.ema_kimg, self.images_seen, cfg.ema_rampup
        )
        update_ema(self.G_ema, self.G, beta)
        return stats

    # --- the run ------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to ``cfg.steps`` (or ``max_minutes``, or a stop signal), logging, sampling
        and checkpointing; the last step is always saved, once."""
        cfg, main = self.cfg, self.dist.main
        stop = _StopSignal()
        started = last_time = time.perf_counter()
        last_seen, totals, count = self.images_seen, {}, 0
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (main and cfg.progress),
            unit="step",
            dynamic_ncols=True,
        )
        if main and self.step == 0:
            self.write_samples()
        try:
            while self.step < cfg.steps:
                for key, value in self.train_step().items():
                    totals[key] = totals.get(key, 0) + value
                count += 1
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    self.wall_time_s += now - last_time
                    rate = (self.images_seen - last_seen) / max(now - last_time, 1e-9)
                    record = self.log_record(totals, count, rate)
                    if main:
                        self.append_log(record)
                        shown = ("loss_d_real", "loss_d_fake", "loss_g", "img_per_s")
                        bar.set_postfix({k: f"{record[k]:.3g}" for k in shown})
                    last_time, last_seen, totals, count = now, self.images_seen, {}, 0
                if main and self.step % cfg.sample_every == 0:
                    self.write_samples()
                # Rank 0's clock decides the time limit; a signal to any rank stops all.
                elapsed = time.perf_counter() - started
                out_of_time = main and bool(cfg.max_minutes) and elapsed > cfg.max_minutes * 60
                if any_rank(self.dist, stop.requested or out_of_time):
                    break
                if self.step % cfg.checkpoint_every == 0:
                    self.save()
        finally:
            stop.restore()
        self.wall_time_s += time.perf_counter() - last_time
        bar.close()
        self.save()
        if main:
            self.write_samples()

    def log_record(self, totals: dict[str, torch.Tensor], count: int, rate: float) -> dict:
        record: dict[str, Any] = {
            "step": self.step,
            "images_seen": self.images_seen,
            "wall_time_s": round(self.wall_time_s, 2),
            "img_per_s": round(rate, 1),
        }
        record |= {k: round(float(v) / max(count, 1), 5) for k, v in totals.items()}
        record["lr_g"] = self.opt_g.param_groups[0]["lr"]
        return record

    def append_log(self, record: dict) -> None:
        with (self.run_dir / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")

    def write_samples(self) -> None:
        folder = self.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        with self.autocast():
            grid = sample_grid(with_standing_stats(self.G_ema), self.cfg.grid, self.alpha, scale=2)
        tmp = folder / ".latest.png.tmp"
        grid.save(tmp, format="PNG")
        (folder / f"step-{self.step:08d}.png").write_bytes(tmp.read_bytes())
        tmp.replace(folder / "latest.png")

    # --- checkpoints (what goes in them: training.resume) ---------------------------------

    def save(self) -> None:
        save_trainer(self)

    def resume(self, path: Path) -> None:
        resume_trainer(self, path)


class _StopSignal:
    """SIGINT/SIGTERM ask the loop to stop after the current step, with a checkpoint."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.request)
        except ValueError:  # not the main thread: no signal handling
            self.previous = {}

    def request(self, signum: int, frame: object) -> None:
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

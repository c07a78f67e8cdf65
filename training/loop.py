"""The training loop: Algorithm 1 of Goodfellow et al. (k discriminator steps, then one
generator step), with the modern options (hinge loss, R1, DiffAugment, EMA), resumable
exactly from its checkpoints.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model_store import Generator, build_generator
from training.augment import diff_augment
from training.config import TrainConfig
from training.data import ImageDataset
from training.discriminators import build_discriminator
from training.distributed import Dist
from training.ema import ema_beta, update_ema, with_standing_stats
from training.losses import d_loss_fake, d_loss_real, g_loss, r1_penalty
from training.resume import resume_trainer, save_trainer
from training.samples import sample_grid


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.enabled:
        name = f"cuda:{d.local_rank}"
    return torch.device(name)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the hardware has it. No fp16: on the GPUs we use bf16 is as fast
    and needs no loss scaling (two GradScalers for a GAN is easy to get wrong)."""
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp != "auto":
        raise ValueError(f"amp must be auto, bf16 or none, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


class Trainer:
    """Owns the networks, optimizers, RNGs and counters of one training run."""

    def __init__(self, cfg: TrainConfig, dataset: ImageDataset, d: Dist | None = None) -> None:
        d = d or Dist()
        self.cfg, self.dist = cfg, d
        self.run_dir = Path(cfg.run_dir)
        self.device = resolve_device(cfg.device, d)
        self.amp = resolve_amp(cfg.amp, self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.setup_data(dataset)
        self.setup_networks()
        # Separate RNG streams, each saved in checkpoints: data order, latents, augmentation.
        rank_seed = cfg.seed * 1_000_003 + d.rank
        self.data_gen = torch.Generator().manual_seed(rank_seed)
        self.z_gen = torch.Generator(self.device).manual_seed(rank_seed + 1)
        self.aug_gen = torch.Generator(self.device).manual_seed(rank_seed + 2)
        self.step, self.images_seen, self.wall_time_s = 0, 0, 0.0

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
        counts = torch.bincount(ds.labels, minlength=len(ds.class_names)).clamp_min(1)
        weights = 1.0 / counts[ds.labels] if cfg.balance else torch.ones(len(ds.labels))
        self.sample_weights = weights.double()

    def setup_networks(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        shape = {
            "num_classes": self.num_classes,
            "channels": self.channels,
            "resolution": self.resolution,
        }
        self.G: Generator = build_generator(
            cfg.arch, {"z_dim": cfg.z_dim, **shape, **cfg.generator_overrides()}
        ).to(self.device, memory_format=self.memory_format)
        self.D: nn.Module = build_discriminator(
            cfg.d_arch, {**shape, **cfg.discriminator_overrides()}
        ).to(self.device, memory_format=self.memory_format)
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.opt_g = self.make_optimizer(self.G, cfg.lr_g)
        self.opt_d = self.make_optimizer(self.D, cfg.lr_d)
        self.G_train: nn.Module = self.G
        self.D_train: nn.Module = self.D
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DistributedDataParallel(self.G, device_ids=ids)
            self.D_train = DistributedDataParallel(self.D, device_ids=ids)
        if cfg.compile:
            self.G_train = torch.compile(self.G_train)
            self.D_train = torch.compile(self.D_train)

    def make_optimizer(self, module: nn.Module, lr: float) -> torch.optim.Optimizer:
        cfg = self.cfg
        if cfg.optimizer == "adam":
            return torch.optim.Adam(module.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2))
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(module.parameters(), lr=lr, momentum=cfg.beta1)
        raise ValueError(f"optimizer must be adam or sgd, got {cfg.optimizer!r}")

    # --- one step -----------------------------------------------------------------------

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None
        )

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = self.cfg.batch_size
        idx = torch.multinomial(self.sample_weights, n, replacement=True, generator=self.data_gen)
        idx = idx.to(self.device)
        return self.real[idx], self.labels[idx] if self.num_classes else None

    def latents(self) -> torch.Tensor:
        n = self.cfg.batch_size
        return torch.randn(n, self.cfg.z_dim, device=self.device, generator=self.z_gen)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.augment, self.aug_gen) if self.cfg.augment else x

    def d_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        real, labels = self.real_batch()
        with torch.no_grad(), self.autocast():
            fake = self.G(self.latents(), labels)
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        # Real and fake pass through D separately (as in the papers; BatchNorm in Radford's
        # D sees one kind per batch). Under DDP the first backward skips the gradient
        # all-reduce, the second reduces the sum.
        no_sync = self.D_train.no_sync() if self.dist.enabled else _null()
        with no_sync:
            real = real.detach().requires_grad_(cfg.r1_gamma > 0)
            with self.autocast():
                logits_real = self.D_train(self.augment(real), labels)
                loss_real = d_loss_real(cfg.loss, logits_real.float())
            r1 = r1_penalty(logits_real.float(), real) if cfg.r1_gamma > 0 else torch.zeros(())
            (loss_real + cfg.r1_gamma / 2 * r1).backward()
        with self.autocast():
            logits_fake = self.D_train(self.augment(fake.detach()), labels)
            loss_fake = d_loss_fake(cfg.loss, logits_fake.float())
        loss_fake.backward()
        self.opt_d.step()
        return {
            "loss_d_real": loss_real.detach(),
            "loss_d_fake": loss_fake.detach(),
            "logit_real": logits_real.detach().float().mean(),
            "logit_fake": logits_fake.detach().float().mean(),
            "r1": r1.detach(),
        }

    def g_step(self) -> dict[str, torch.Tensor]:
        _, labels = self.real_batch()  # fake classes follow the data's class distribution
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self.autocast():
            fake = self.G_train(self.latents(), labels)
            loss = g_loss(self.cfg.loss, self.D(self.augment(fake), labels).float())
        loss.backward()
        self.opt_g.step()
        return {"loss_g": loss.detach()}

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        lr_scale = cfg.lr_decay**self.step  # from the step, so a resume matches exactly
        for opt, lr in ((self.opt_g, cfg.lr_g), (self.opt_d, cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * lr_scale
        stats: dict[str, torch.Tensor] = {}
        for _ in range(cfg.d_steps):
            stats = self.d_step()
        stats |= self.g_step()
        self.step += 1
        self.images_seen += cfg.batch_size * self.dist.world * cfg.d_steps  # reals shown to D
        beta = ema_beta(
            cfg.batch_size * self.dist.world, cfg.ema_kimg, self.images_seen, cfg.ema_rampup
        )
        update_ema(self.G_ema, self.G, beta)
        return stats

    # --- the run ------------------------------------------------------------------------

    def fit(self) -> None:
        """Train to ``cfg.steps`` (or ``max_minutes``), logging, sampling, checkpointing."""
        cfg, main = self.cfg, self.dist.main
        stop = _StopFlag()
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
        while self.step < cfg.steps and not stop.requested:
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
            out_of_time = cfg.max_minutes and time.perf_counter() - started > cfg.max_minutes * 60
            if out_of_time:
                stop.requested = True
            if self.step % cfg.checkpoint_every == 0 or stop.requested:
                self.save()
        self.wall_time_s += time.perf_counter() - last_time
        bar.close()
        self.save()
        if main:
            self.write_samples()
        stop.restore()

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


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class _StopFlag:
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

"""What a checkpoint of a training run holds, and how a ``Trainer`` is put back from one.

``training.checkpoint`` knows the folder format (safetensors + JSON, atomic); this module
knows the run: networks, optimizers and EMA, counters, the Python and NumPy RNG states, and
the config, which must match for a resume. The trainer's own random numbers need no saved
state: each step's are drawn from streams seeded by (seed, rank, step), so a checkpoint
holds nothing tied to a device or to the number of processes.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from training import checkpoint as ckpt
from training.config import ConfigError, TrainConfig
from training.distributed import barrier

if TYPE_CHECKING:
    from training.loop import Trainer

# Config fields a resumed run may change; any other difference means another run.
RESUMABLE_CHANGES = {
    "steps",
    "max_minutes",
    "sample_every",
    "checkpoint_every",
    "keep_checkpoints",
    "log_every",
    "progress",
    "threads",
    "device",
    "compile",
    "compile_mode",
    "data",
    "run_dir",  # a moved run directory is still the same run
}


class RunChangedWarning(UserWarning):
    """A resumed run continues, but not exactly as the saved one would have."""


def save_trainer(trainer: Trainer) -> None:
    """A checkpoint of ``trainer`` at its step (rank 0 writes; every rank takes part).
    A step already saved is not saved again."""
    if trainer.saved_step == trainer.step:
        return
    if trainer.dist.main:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema)):
            tensors |= ckpt.module_tensors(prefix, module)
        opt_g, opt_g_json = ckpt.flatten_optimizer("opt_g", trainer.opt_g)
        opt_d, opt_d_json = ckpt.flatten_optimizer("opt_d", trainer.opt_d)
        tensors |= opt_g | opt_d
        state = {
            "step": trainer.step,
            "images_seen": trainer.images_seen,
            "wall_time_s": trainer.wall_time_s,
            "world": trainer.dist.world,
            "opt_g": opt_g_json,
            "opt_d": opt_d_json,
            "python_rng": _python_rng_state(),
            "numpy_rng": _numpy_rng_state(),
            "config": trainer.cfg.to_dict(),
        }
        ckpt.save_checkpoint(trainer.run_dir / "checkpoints", trainer.step, tensors, state)
        ckpt.prune_checkpoints(trainer.run_dir / "checkpoints", trainer.cfg.keep_checkpoints)
    barrier(trainer.dist)
    trainer.saved_step = trainer.step


def resume_trainer(trainer: Trainer, path: Path) -> None:
    """Put ``trainer`` back to the checkpoint at ``path`` (same run: see ``check_same_run``).

    Tensors load onto the trainer's device whatever device saved them."""
    tensors, state = ckpt.load_checkpoint(path)
    check_same_run(trainer.cfg, state["config"])
    for prefix, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema)):
        ckpt.load_module(prefix, module, tensors)
    ckpt.unflatten_optimizer("opt_g", trainer.opt_g, tensors, state["opt_g"])
    ckpt.unflatten_optimizer("opt_d", trainer.opt_d, tensors, state["opt_d"])
    trainer.step, trainer.images_seen = state["step"], state["images_seen"]
    trainer.wall_time_s = state["wall_time_s"]
    trainer.saved_step = trainer.step
    random.setstate(_tuples(state["python_rng"]))
    np.random.set_state(tuple(state["numpy_rng"]))
    world = trainer.dist.world
    if state["world"] != world:
        batch = trainer.cfg.batch_size
        warnings.warn(
            f"{path} was written by a run of {state['world']} processes, now {world}: it "
            f"continues from step {trainer.step} with {world * batch} images per step instead "
            f"of {state['world'] * batch}, so it is not the exact continuation of the saved run",
            RunChangedWarning,
            stacklevel=2,
        )


def check_same_run(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    """ConfigError unless ``cfg`` is the saved run's config but for ``RESUMABLE_CHANGES``.
    A field the saved config lacks (added since) counts as its default."""
    defaults = TrainConfig().to_dict()
    changed = sorted(
        k
        for k, v in cfg.to_dict().items()
        if k not in RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v
    )
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {getattr(cfg, k)!r}" for k in changed)
        raise ConfigError(
            f"the checkpoint belongs to a different run ({details}); "
            "use a new --run-dir or the same options"
        )


def _python_rng_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _tuples(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def _numpy_rng_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), pos, has_gauss, cached]

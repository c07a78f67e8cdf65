"""Checks before a long run on a machine lent for minutes: what the device is, whether the
compiled step agrees with the eager one, and whether a run moves between devices.
``python -m training preflight`` writes them as one JSON file that comes back with the run
(``scripts/gpu-train``).

"Agrees" is measured, not assumed: from the same state (same seed, so the same initial
weights and the same random draws) one step is taken three ways: eager at the run's
precision, eager in fp32, and compiled at the run's precision. The eager bf16-vs-fp32
difference is the precision's own noise; the compiled step agrees when it is no further
from the eager one than twice that noise (or 1e-3 where the run is fp32).
"""

from __future__ import annotations

import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from model_store import seeds_to_latents
from training import checkpoint as ckpt
from training.config import TrainConfig
from training.data import ImageDataset
from training.loop import Trainer, device_name


def device_report(device: torch.device) -> dict[str, Any]:
    report: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        report |= {
            "cuda": torch.version.cuda,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
        }
    return report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_step(cfg: TrainConfig, data: ImageDataset, run_dir: Path) -> dict[str, Any]:
    """A fresh trainer's first step: its losses and G's images for fixed seeds after it."""
    trainer = Trainer(replace(cfg, run_dir=str(run_dir)), data)
    started = time.perf_counter()
    stats = trainer.train_step()
    _sync(trainer.device)
    seconds = time.perf_counter() - started
    z = seeds_to_latents(list(range(16)), trainer.G.z_dim).to(trainer.device)
    labels = torch.arange(16, device=trainer.device) % max(trainer.num_classes, 1)
    with torch.no_grad():
        images = trainer.G.eval()(z, labels if trainer.num_classes else None).float().cpu()
    trainer.G.train()
    return {
        "losses": {k: float(v) for k, v in stats.items()},
        "images": images,
        "first_step_s": seconds,
    }


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    losses = max(abs(a["losses"][k] - b["losses"][k]) for k in a["losses"])
    return {"loss": losses, "image": float((a["images"] - b["images"]).abs().max())}


def compiled_vs_eager(
    cfg: TrainConfig, data: ImageDataset, compiled: TrainConfig | None = None
) -> dict[str, Any]:
    """Agreement of one compiled step with one eager step from the same state (see the
    module's note). ``compiled``: the config of the compiled side (default: ``cfg`` with
    ``compile=True``); a CPU test passes an eager one, as CI never compiles."""
    compiled = compiled or replace(cfg, compile=True)
    eager_cfg = replace(cfg, compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        eager = one_step(eager_cfg, data, Path(tmp) / "eager")
        fp32 = one_step(replace(eager_cfg, amp="none"), data, Path(tmp) / "fp32")
        other = one_step(compiled, data, Path(tmp) / "compiled")
    noise = largest_difference(eager, fp32)
    difference = largest_difference(other, eager)
    tolerance = {k: max(2 * v, 1e-3) for k, v in noise.items()}
    return {
        "compile": compiled.compile,
        "compile_mode": compiled.compile_mode,
        "losses_eager": eager["losses"],
        "losses_compiled": other["losses"],
        "precision_noise": noise,
        "difference": difference,
        "tolerance": tolerance,
        "agree": all(difference[k] <= tolerance[k] for k in difference),
        "first_step_s": {"eager": eager["first_step_s"], "compiled": other["first_step_s"]},
    }


def moved_run(cfg: TrainConfig, data: ImageDataset, devices: list[str]) -> dict[str, Any]:
    """Train 2 steps on each of ``devices`` in turn, each resuming the last one's
    checkpoint: the counters continue and the weights arrive bitwise as saved."""
    legs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, device in enumerate(devices):
            steps = 2 * (i + 1)
            leg_cfg = replace(
                cfg, run_dir=tmp, device=device, steps=steps, compile=False, progress=False
            )
            trainer = Trainer(leg_cfg, data)
            latest = ckpt.latest_checkpoint(Path(tmp) / "checkpoints")
            arrived = True
            if latest is not None:
                trainer.resume(latest)
                tensors, _ = ckpt.load_checkpoint(latest)
                own = ckpt.module_tensors("G_ema", trainer.G_ema)
                arrived = all(torch.equal(own[k].cpu(), tensors[k]) for k in own)
            resumed_at = trainer.step
            trainer.fit()
            legs.append(
                {
                    "device": device_name(trainer.device),
                    "resumed_at": resumed_at,
                    "weights_arrived_as_saved": arrived,
                    "step": trainer.step,
                    "images_seen": trainer.images_seen,
                    "optimizer_steps": int(
                        max(s.get("step", 0) for s in trainer.opt_g.state.values())
                    ),
                }
            )
    ok = all(
        leg["weights_arrived_as_saved"]
        and leg["resumed_at"] == 2 * i
        and leg["step"] == 2 * (i + 1)
        for i, leg in enumerate(legs)
    )
    return {"legs": legs, "continues": ok}

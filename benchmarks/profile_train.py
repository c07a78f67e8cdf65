"""Where a training step's time goes: torch.profiler over a few steps of one preset.

    python benchmarks/profile_train.py --data ~/.cache/dne/data/emoji.dne.gz --preset sngan \
        --threads 1 --out benchmarks/profile_train.md

Each step is split into phases by wrapping the trainer's parts in ``record_function``
(data/latent draws, D step, G step, augmentation, spectral norm's power iteration, the
optimizers, EMA), whichever of them the trainer in this checkout has, so the same script
profiles an older trainer too. Besides the time per phase it counts the operator calls
(top-level aten ops) per step: on a GPU each is at least one kernel launch, so the count
is the CPU-side measure of a fixed per-step cost. Host-device copies are counted apart.
A CPU profile says where the CPU spends time; on CUDA, with the GPU running behind the
host, the picture is a different one (launch overhead, synchronisations): run it with
``--device cuda`` there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from bench_train import bench_options
from report import publish
from torch.profiler import ProfilerActivity, profile, record_function

import training.loop as loop
from training.config import PRESETS, resolve_config
from training.data import load_dataset
from training.loop import Trainer, device_name

PHASES = ("draws", "d_step", "g_step", "augment", "spectral_norm", "optimizer", "ema")


def labelled(name: str, function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with record_function(f"phase::{name}"):
            return function(*args, **kwargs)

    return wrapper


def label_phases(trainer: Trainer) -> None:
    """Wrap what this checkout's trainer has: new (draw_step) or old (real_batch) names."""
    for method, phase in (
        ("draw_step", "draws"),
        ("real_batch", "draws"),
        ("latents", "draws"),
        ("d_step", "d_step"),
        ("g_step", "g_step"),
        ("augment", "augment"),
    ):
        if hasattr(trainer, method):
            setattr(trainer, method, labelled(phase, getattr(trainer, method)))
    loop.update_ema = labelled("ema", loop.update_ema)
    for opt in (trainer.opt_g, trainer.opt_d):
        opt.step = labelled("optimizer", opt.step)
    from torch.nn.utils.parametrizations import _SpectralNorm

    _SpectralNorm.forward = labelled("spectral_norm", _SpectralNorm.forward)


def top_level_ops(events: Any) -> list[Any]:
    """aten ops not called from another aten op: one per operator the Python code asked for."""
    return [
        e
        for e in events
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data-set file (build-emoji)")
    parser.add_argument("--preset", default="sngan", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--label", default="", help="names the code profiled in the output")
    parser.add_argument("--out", type=Path, help="Markdown file to append the summary to")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(resolve_config(args.preset, bench_options(args, run_dir)), data)
        for _ in range(args.warmup):
            trainer.train_step()
        label_phases(trainer)
        activities = [ProfilerActivity.CPU]
        if trainer.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                with record_function("phase::step"):
                    trainer.train_step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
    events = prof.events()
    phase_us: dict[str, float] = defaultdict(float)
    for e in events:
        if e.name.startswith("phase::"):
            phase_us[e.name[7:]] += e.cpu_time_total
    ops = top_level_ops(events)
    copies = [e for e in ops if e.name in ("aten::to", "aten::_to_copy", "aten::copy_")]
    syncs = [e for e in ops if e.name in ("aten::item", "aten::_local_scalar_dense")]
    by_op: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        if e.name.startswith("aten::"):
            by_op[e.name][0] += 1
            by_op[e.name][1] += e.self_cpu_time_total
    step_ms = phase_us["step"] / 1000 / args.steps
    load = os.getloadavg()
    lines = [
        f"### {args.label or 'this checkout'}: {args.preset}, batch {args.batch_size}, "
        f"{device_name(trainer.device)}",
        "",
        f"{dt.date.today()} on {platform.node()} ({os.cpu_count()} CPUs, torch "
        f"{torch.__version__}); command: `python {' '.join(sys.argv)}`; load average after: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        f"- step: {step_ms:.0f} ms (CPU time under the profiler, {args.steps} steps after "
        f"{args.warmup} warm-up)",
        f"- operator calls per step (top-level aten ops, ≈ kernel launches on a GPU): "
        f"{len(ops) / args.steps:.0f}; of them copies/casts {len(copies) / args.steps:.0f}, "
        f"host reads (.item) {len(syncs) / args.steps:.0f}",
        "",
        "| phase | ms/step | share |",
        "|---|---:|---:|",
        *(
            f"| {p} | {phase_us[p] / 1000 / args.steps:.1f} | "
            f"{phase_us[p] / max(phase_us['step'], 1e-9):.0%} |"
            for p in PHASES
            if p in phase_us
        ),
        "",
        "Phases nest (augment and spectral norm run inside the D and G steps).",
        "",
        "| op (self CPU time) | calls/step | ms/step |",
        "|---|---:|---:|",
        *(
            f"| {name} | {calls / args.steps:.0f} | {us / args.steps / 1000:.1f} |"
            for name, (calls, us) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:12]
        ),
        "",
    ]
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput (real images shown to D per second) for each preset, side by side.

    python benchmarks/bench_train.py --data ~/.cache/dne/data/emoji.dne.gz \
        --out benchmarks/train_throughput.md

Each preset runs ``--warmup`` untimed steps, then ``--steps`` timed ones, in one process,
one after the other, so the ratios between presets are fair on a noisy shared machine.
Pause other work first (``kill -STOP``); the load average is recorded beside the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from training.config import PRESETS, TrainConfig
from training.data import load_dataset
from training.loop import Trainer, device_name


def measure(preset: str, args: argparse.Namespace, data) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as run_dir:
        values = {**PRESETS[preset], "data": str(args.data), "run_dir": run_dir}
        values |= {"device": args.device, "batch_size": args.batch_size, "progress": False}
        cfg = replace(TrainConfig(), **values)
        trainer = Trainer(cfg, data)
        for _ in range(args.warmup):
            trainer.train_step()
        sync(trainer.device)
        seen, start = trainer.images_seen, time.perf_counter()
        for _ in tqdm(range(args.steps), desc=preset, unit="step", leave=False):
            trainer.train_step()
        sync(trainer.device)
        elapsed = time.perf_counter() - start
    return {
        "preset": preset,
        "arch": f"{cfg.arch} G / {cfg.d_arch} D",
        "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32",
        "img_s": (trainer.images_seen - seen) / elapsed,
        "step_ms": 1000 * elapsed / args.steps,
        "device": device_name(trainer.device),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data-set file (build-emoji)")
    parser.add_argument("--presets", default="goodfellow,dcgan,sngan,resnet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, help="Markdown file to append the results to")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.data)
    rows = [measure(p, args, data) for p in args.presets.split(",")]
    load = os.getloadavg()
    lines = [
        f"### {dt.date.today()} on {platform.node()} ({rows[0]['device']}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__})",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Data: {data.describe()}; batch {args.batch_size}, {args.warmup} warm-up + "
        f"{args.steps} timed steps per preset; load average after: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "",
        "| preset | networks | autocast | images/s | ms/step |",
        "|---|---|---|---:|---:|",
        *(
            f"| {r['preset']} | {r['arch']} | {r['amp']} | {r['img_s']:.0f} | {r['step_ms']:.0f} |"
            for r in rows
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with args.out.open("a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

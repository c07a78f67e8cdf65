"""Training throughput (real images shown to D per second) for each preset, side by side.

    python benchmarks/bench_train.py --data ~/.cache/dne/data/emoji.dne.gz \
        --out benchmarks/train_throughput.md

Each preset runs ``--warmup`` untimed steps, then ``--steps`` timed ones, in one process,
one after the other, so the ratios between presets are fair on a noisy shared machine.
Pause other work first (``kill -STOP``); the load average is recorded beside the table.

Before and after a change, in one run: check the old commit out beside this one and
name it with ``--baseline``; each preset is then measured in fresh processes, old code
and this checkout's code taking turns (``--repeat`` rounds), and the table gives both
and their ratio:

    git worktree add --detach /tmp/before <old commit>
    python benchmarks/bench_train.py --data ... --baseline /tmp/before --repeat 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import publish
from tqdm import tqdm

from training.config import resolve_config
from training.data import load_dataset
from training.loop import Trainer, device_name

HERE = Path(__file__).resolve().parent.parent  # this checkout


def bench_options(args: argparse.Namespace, run_dir: str) -> dict[str, object]:
    """The options a benchmark gives the preset (profile_train.py takes the same)."""
    return {"data": str(args.data), "run_dir": run_dir, "device": args.device,
            "batch_size": args.batch_size, "progress": False}  # fmt: skip


def measure(preset: str, args: argparse.Namespace, data) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = resolve_config(preset, bench_options(args, run_dir) | {"compile": args.compile})
        trainer = Trainer(cfg, data)
        for _ in range(args.warmup):
            trainer.train_step()
        sync(trainer.device)
        seen, start, cpu_start = trainer.images_seen, time.perf_counter(), time.process_time()
        for _ in tqdm(range(args.steps), desc=preset, unit="step", leave=False):
            trainer.train_step()
        sync(trainer.device)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
    return {
        "preset": preset,
        "batch_size": args.batch_size,
        "compile": args.compile,
        "arch": f"{cfg.arch} G / {cfg.d_arch} D",
        "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "fp32",
        "img_s": (trainer.images_seen - seen) / elapsed,
        "step_ms": 1000 * elapsed / args.steps,
        # CPU time of this process: the work done, whatever else the machine runs (with
        # one torch thread it is the step time of an idle machine, or close to it).
        "cpu_ms": 1000 * cpu / args.steps,
        "device": device_name(trainer.device),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measured_in(code: Path, preset: str, args: argparse.Namespace) -> dict[str, object]:
    """One measurement in a fresh process importing ``training`` from ``code``."""
    command = [sys.executable, __file__, "--data", str(args.data), "--presets", preset]
    command += ["--device", args.device, "--batch-size", str(args.batch_size)]
    command += ["--threads", str(args.threads), "--warmup", str(args.warmup)]
    command += ["--steps", str(args.steps), "--json", *(["--compile"] if args.compile else [])]
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)[0]


def compare(args: argparse.Namespace) -> tuple[list[str], str]:
    """Old code (``--baseline``) and this checkout, taking turns per preset."""
    rows, device = [], ""
    for preset in args.presets.split(","):
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.repeat):
            runs["before"].append(measured_in(args.baseline, preset, args))
            runs["after"].append(measured_in(HERE, preset, args))
        med = {
            key: {k: statistics.median(r[key] for r in v) for k, v in runs.items()}
            for key in ("step_ms", "cpu_ms")
        }
        r = runs["after"][0]
        device = str(r["device"])
        ms, cpu = med["step_ms"], med["cpu_ms"]
        rows.append(
            f"| {preset} | {r['arch']} | {r['amp']} | {ms['before']:.0f} | {ms['after']:.0f} "
            f"| {ms['before'] / ms['after']:.2f}x | {cpu['before']:.0f} | {cpu['after']:.0f} "
            f"| {cpu['before'] / cpu['after']:.2f}x |"
        )
    return [
        f"Before: `{args.baseline}` ({git_commit(args.baseline)}); after: this checkout "
        f"({git_commit(HERE)}); medians of {args.repeat} runs each, taking turns.",
        "",
        "| preset | networks | autocast | wall ms/step before | after | speed-up "
        "| CPU ms/step before | after | speed-up |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ], device


def git_commit(path: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or "not a git checkout"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="data-set file (build-emoji)")
    parser.add_argument("--presets", default="goodfellow,dcgan,sngan,resnet")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--repeat", type=int, default=2, help="rounds with --baseline")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON only")
    parser.add_argument("--out", type=Path, help="Markdown file to append the results to")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    if args.baseline:
        table, device = compare(args)
    else:
        data = load_dataset(args.data)
        rows = [measure(p, args, data) for p in args.presets.split(",")]
        if args.json:
            print(json.dumps(rows))
            return 0
        device = str(rows[0]["device"])
        table = [
            "| preset | networks | autocast | batch | compiled | images/s | ms/step "
            "| CPU ms/step |",
            "|---|---|---|---:|---|---:|---:|---:|",
            *(
                f"| {r['preset']} | {r['arch']} | {r['amp']} | {r['batch_size']} "
                f"| {'yes' if r['compile'] else 'no'} | {r['img_s']:.0f} | {r['step_ms']:.1f} "
                f"| {r['cpu_ms']:.1f} |"
                for r in rows
            ),
        ]
    load = os.getloadavg()
    threads = args.threads or torch.get_num_threads()
    lines = [
        f"### {dt.date.today()} on {platform.node()} ({args.device} device, {threads} torch "
        f"threads, {os.cpu_count()} CPUs, torch {torch.__version__})",
        "",
        f"Command: `python {' '.join(sys.argv)}`  ",
        f"Batch {args.batch_size}, {args.warmup} warm-up + {args.steps} timed steps per "
        f"preset; load average before: {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"({device})",
        "",
        *table,
        "",
    ]
    publish(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``python -m training`` command line: one subcommand per job."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import torch

from model_store import DEFAULT_ROOT, ModelStore, sha256_file
from training.checkpoint import latest_checkpoint, write_atomic
from training.config import TrainConfig, add_train_arguments, config_from_args
from training.data import ImageDataset, add_data_commands, load_dataset
from training.distributed import init_distributed, shutdown
from training.evaluate import add_evaluate_commands
from training.export import RUN_INFO, export_run
from training.loop import Trainer, device_name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train GAN generators for This X Does Not Exist and export them into "
        "the model store. Typical use: build-emoji, then train, then export.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_data_commands(sub)

    train = sub.add_parser(
        "train",
        help="train (or resume) a GAN on a data-set file",
        description="Train a GAN. If --run-dir holds a checkpoint of the same run, training "
        "resumes from it exactly (counters, optimizers, EMA and RNG states). Run under "
        "torchrun for several processes (DistributedDataParallel; gloo on CPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    export = sub.add_parser(
        "export",
        help="store a run's EMA generator in the model store",
        description="Write the EMA generator of a run's checkpoint to "
        "<store>/<name>/<version>/ with its manifest, sample grid and training summary.",
    )
    export.add_argument("run_dir", type=Path, help="the run directory given to train")
    export.add_argument("--name", required=True, help="model name, e.g. emoji")
    export.add_argument("--store", type=Path, default=DEFAULT_ROOT, help="model store folder")
    export.add_argument("--checkpoint", type=Path, help="a checkpoint folder (default: latest)")
    export.add_argument("--version", type=int, help="version number (default: next free)")
    export.add_argument("--description", default="", help="one line for people browsing models")
    export.set_defaults(func=cmd_export)
    add_evaluate_commands(sub)  # evaluate, train-features, build-mnist
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if not cfg.data or not cfg.run_dir:
        sys.exit("train needs --data (a data-set file) and --run-dir")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    wants_cuda = cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()
    )
    d = init_distributed("cuda" if wants_cuda else "cpu")
    try:
        dataset = load_dataset(Path(cfg.data))
        trainer = Trainer(cfg, dataset, d)
        run_dir = Path(cfg.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        latest = latest_checkpoint(run_dir / "checkpoints")
        if latest is not None:
            trainer.resume(latest)
            if d.main:
                print(f"resuming {latest} at step {trainer.step}", file=sys.stderr)
        if d.main:
            record_run(run_dir, cfg, trainer, dataset)
        trainer.fit()
    finally:
        shutdown(d)
    return 0


def record_run(run_dir: Path, cfg: TrainConfig, trainer: Trainer, ds: ImageDataset) -> None:
    """Write ``run.json`` (what export needs) on the first start; log each command."""
    command = "python -m training " + shlex.join(sys.argv[1:])
    path = run_dir / RUN_INFO
    if path.is_file():
        info = json.loads(path.read_text())
        info["resumed_with"] = [*info.get("resumed_with", []), command]
    else:
        info = {
            "command": command,
            "architecture": cfg.arch,
            "generator_config": trainer.G.config.to_dict(),
            "alpha": trainer.alpha,
            "class_names": list(trainer.dataset.class_names),
            "class_slugs": list(trainer.dataset.class_slugs),
            "dataset": ds.describe(),
            "dataset_sha256": sha256_file(Path(cfg.data)),
            "num_images": len(trainer.dataset.labels),
            "credits": ds.credits(),
            "device": device_name(trainer.device),
            "config": cfg.to_dict(),
        }
    write_atomic(path, json.dumps(info, indent=1))


def cmd_export(args: argparse.Namespace) -> int:
    manifest = export_run(
        args.run_dir,
        ModelStore(args.store),
        args.name,
        checkpoint=args.checkpoint,
        version=args.version,
        description=args.description,
    )
    print(f"stored {manifest.ref} in {args.store}")
    return 0

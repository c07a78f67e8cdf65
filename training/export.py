"""Export a run's EMA generator into the model store with a full manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_store import Manifest, ModelStore, TrainingInfo, build_generator
from training import checkpoint as ckpt
from training.ema import with_standing_stats
from training.plots import loss_curve_png
from training.samples import sample_grid

RUN_INFO = "run.json"  # written by ``train``: data set, classes, credits, command, device


def export_run(
    run_dir: Path,
    store: ModelStore,
    name: str,
    *,
    checkpoint: Path | None = None,
    version: int | None = None,
    description: str = "",
) -> Manifest:
    """Store the EMA generator of ``checkpoint`` (default: the run's latest) as ``name``."""
    path = checkpoint or ckpt.latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise ckpt.RunError(f"{run_dir / 'checkpoints'}: no checkpoint to export")
    tensors, state = ckpt.load_checkpoint(path)
    if not (run_dir / RUN_INFO).is_file():
        raise ckpt.RunError(f"{run_dir / RUN_INFO}: missing (is {run_dir} a run directory?)")
    info = json.loads((run_dir / RUN_INFO).read_text())
    cfg = state["config"]
    generator = build_generator(info["architecture"], info["generator_config"])
    ckpt.load_module("G_ema", generator, tensors)
    # More batches than during training: these statistics ship with the model.
    generator = with_standing_stats(generator, batches=64)
    alpha = info["alpha"]
    conditional = bool(generator.num_classes)
    training = TrainingInfo(
        dataset=info["dataset"],
        dataset_sha256=info["dataset_sha256"],
        num_images=info["num_images"],
        steps=state["step"],
        images_seen=state["images_seen"],
        wall_time_s=round(state["wall_time_s"], 1),
        device=info["device"],
        throughput_img_s=round(state["images_seen"] / max(state["wall_time_s"], 1e-9), 1),
        command=info["command"],
        recipe=recipe(cfg),
        checkpoint=path.name,
    )
    log = run_dir / "log.jsonl"
    extra: dict[str, str | bytes] = {"training.md": training_summary(training, log)}
    if log.is_file():
        extra["losses.png"] = loss_curve_png(log)
    return store.save(
        generator,
        name=name,
        version=version,
        description=description,
        alpha=alpha,
        class_names=info["class_names"] if conditional else [],
        class_slugs=info["class_slugs"] if conditional else [],
        training=training,
        credits=info.get("credits", []),
        sample_grid=sample_grid(generator, 8, alpha),
        extra_files=extra,
    )


def recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "arch",
        "g_config",
        "d_arch",
        "d_config",
        "loss",
        "d_steps",
        "optimizer",
        "lr_g",
        "lr_d",
        "beta1",
        "beta2",
        "r1_gamma",
        "augment",
        "ema_kimg",
        "batch_size",
        "skin_tones",
        "balance",
        "amp",
        "seed",
    )
    return {k: cfg[k] for k in keys}


def training_summary(training: TrainingInfo, log: Path) -> str:
    """A short Markdown page: the command, the figures, the last logged losses."""
    lines = [
        "# How this model was trained",
        "",
        "```",
        training.command,
        "```",
        "",
        f"- data set: {training.dataset} ({training.num_images} images)",
        f"- device: {training.device}",
        f"- steps: {training.steps}, images seen: {training.images_seen}",
        f"- wall time: {training.wall_time_s / 60:.1f} min, "
        f"{training.throughput_img_s:.1f} images/s",
        f"- recipe: `{json.dumps(training.recipe)}`",
    ]
    if log.is_file():
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if records:
            lines += ["", "Last logged step:", "", "```", json.dumps(records[-1]), "```"]
    return "\n".join(lines) + "\n"

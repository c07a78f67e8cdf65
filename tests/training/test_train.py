"""The trainer on tiny generated data: every architecture learns, resume is exact,
export round-trips through the model store, and DDP runs with two gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model_store import ModelStore, seeds_to_latents, to_uint8
from training import checkpoint as ckpt
from training.config import PRESETS, TrainConfig
from training.data import load_dataset
from training.ema import with_standing_stats
from training.export import export_run
from training.loop import Trainer

# Small enough for seconds on two cores; every preset keeps its recipe (loss, D, optimizer).
TINY = {
    "goodfellow": {"g_config": '{"hidden": [64, 64]}', "d_config": '{"width": 32}'},
    "dcgan": {"g_config": '{"ngf": 8}', "d_config": '{"width": 8}'},
    "sngan": {"g_config": '{"ngf": 8, "conditioning": "cbn"}', "d_config": '{"width": 8}'},
    "resnet": {"g_config": '{"ch": 4, "multipliers": [4, 2, 1]}', "d_config": '{"width": 8}'},
}


def tiny_args(preset: str) -> list[str]:
    """The command-line form of ``tiny_config``'s networks: small enough for a test."""
    tiny = TINY[preset]
    return ["--g-config", tiny["g_config"], "--d-config", tiny["d_config"], "--z-dim", "16",
            "--grid", "2"]  # fmt: skip


def tiny_config(preset: str, data: Path, run_dir: Path, **overrides: object) -> TrainConfig:
    values = {**PRESETS[preset], **TINY[preset], "z_dim": 16, "batch_size": 8}
    values |= {"data": str(data), "run_dir": str(run_dir), "progress": False, "threads": 1}
    values |= {"sample_every": 1000, "grid": 2, "log_every": 1}
    return replace(TrainConfig(), **{**values, **overrides})


def log_of(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("preset", sorted(TINY))
def test_each_architecture_trains_and_its_losses_move(
    preset: str, shapes_file: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(preset, shapes_file, tmp_path / "run", steps=12, checkpoint_every=100)
    trainer = Trainer(cfg, load_dataset(shapes_file))
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.fit()
    log = log_of(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, 13))
    # Hinge terms may sit at 0 for a while (a confident D), so D's total is what must move.
    losses = {
        "loss_d": [r["loss_d_real"] + r["loss_d_fake"] for r in log],
        "loss_g": [r["loss_g"] for r in log],
    }
    for key, values in losses.items():
        assert torch.isfinite(torch.tensor(values)).all(), (key, values)
        assert len(set(values)) > 1, f"{key} never moved: {values}"
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters(), strict=True))
    assert log[-1]["images_seen"] == 12 * 8 * cfg.d_steps
    assert (tmp_path / "run" / "samples" / "latest.png").is_file()


def test_conditional_generator_output_depends_on_the_class(
    shapes_file: Path, tmp_path: Path
) -> None:
    cfg = tiny_config("sngan", shapes_file, tmp_path / "run", steps=10, checkpoint_every=100)
    trainer = Trainer(cfg, load_dataset(shapes_file))
    trainer.fit()
    assert trainer.num_classes == 2
    g = with_standing_stats(trainer.G_ema)
    z = seeds_to_latents(list(range(8)), g.z_dim)
    with torch.no_grad():
        discs, squares = (
            g(z, torch.zeros(8, dtype=torch.long)),
            g(z, torch.ones(8, dtype=torch.long)),
        )
    assert (discs - squares).abs().mean() > 1e-3


def all_state(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors = {}
    for prefix, module in (("G", trainer.G), ("D", trainer.D), ("G_ema", trainer.G_ema)):
        tensors |= ckpt.module_tensors(prefix, module)
    tensors |= ckpt.flatten_optimizer("opt_g", trainer.opt_g)[0]
    tensors |= ckpt.flatten_optimizer("opt_d", trainer.opt_d)[0]
    return tensors


@pytest.mark.parametrize("preset", ["sngan", "goodfellow"])
def test_resume_continues_the_same_run_bitwise(
    preset: str, shapes_file: Path, tmp_path: Path
) -> None:
    data = load_dataset(shapes_file)
    exact = {"deterministic": True, "amp": "none"}
    straight = Trainer(tiny_config(preset, shapes_file, tmp_path / "a", steps=8, **exact), data)
    straight.fit()

    first = tiny_config(preset, shapes_file, tmp_path / "b", steps=4, **exact)
    Trainer(first, data).fit()
    second = Trainer(replace(first, steps=8), data)
    second.resume(ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert (second.step, second.images_seen) == (4, 4 * 8 * first.d_steps)
    second.fit()

    assert (second.step, second.images_seen) == (straight.step, straight.images_seen)
    a, b = all_state(straight), all_state(second)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs in {different[:5]}"
    losses = lambda run: [(r["loss_d_real"], r["loss_g"]) for r in log_of(tmp_path / run)]  # noqa: E731
    assert losses("a") == losses("b")


def test_resume_refuses_a_different_run(shapes_file: Path, tmp_path: Path) -> None:
    data = load_dataset(shapes_file)
    cfg = tiny_config("dcgan", shapes_file, tmp_path / "run", steps=2)
    Trainer(cfg, data).fit()
    other = Trainer(replace(cfg, lr_g=1e-3, steps=4), data)
    with pytest.raises(ValueError, match="lr_g"):
        other.resume(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))


def test_export_round_trip_gives_the_same_images_for_the_same_seeds(
    shapes_file: Path, tmp_path: Path
) -> None:
    from training.cli import record_run

    cfg = tiny_config("sngan", shapes_file, tmp_path / "run", steps=6)
    trainer = Trainer(cfg, load_dataset(shapes_file))
    (tmp_path / "run").mkdir()
    record_run(tmp_path / "run", cfg, trainer, load_dataset(shapes_file))
    trainer.fit()
    store = ModelStore(tmp_path / "store")
    manifest = export_run(tmp_path / "run", store, "shapes", description="test shapes")
    assert (manifest.name, manifest.version, manifest.class_names) == (
        "shapes",
        1,
        ["Discs", "Squares"],
    )
    assert manifest.training.steps == 6 and manifest.training.images_seen == 48
    assert manifest.credits == ["made up by the test suite"]
    folder = store.resolve("shapes", "latest")
    assert {"generator.safetensors", "manifest.json", "training.md", "losses.png"} <= {
        p.name for p in folder.iterdir()
    }

    loaded = store.load("shapes", "latest", device="cpu").generator
    reference = with_standing_stats(trainer.G_ema, batches=64).eval()
    stored, expected = dict(loaded.named_parameters()), dict(reference.named_parameters())
    assert stored.keys() == expected.keys()
    assert all(torch.equal(stored[k], expected[k]) for k in stored)
    # The trainer's copy is channels_last, the loaded one is not: convolution algorithms
    # differ in the last float bits, so the BatchNorm statistics re-estimated at export
    # match closely (not bitwise), and images are compared as the uint8 a user gets.
    for (name, a), (_, b) in zip(loaded.named_buffers(), reference.named_buffers(), strict=True):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name
    z = seeds_to_latents(list(range(16)), loaded.z_dim)
    labels = torch.arange(16) % 2
    with torch.no_grad():
        a = to_uint8(loaded(z, labels), manifest.alpha).int()
        b = to_uint8(reference(z, labels), manifest.alpha).int()
    assert (a - b).abs().max() <= 1


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )


def test_help_explains_every_train_option() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for command in ("build-emoji", "build-folder", "train", "export"):
        assert command in top.stdout
    train = run_cli("train", "--help")
    assert train.returncode == 0
    for field in TrainConfig.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in train.stdout


@pytest.mark.slow
def test_cli_trains_under_torchrun_with_two_gloo_processes_then_exports(
    shapes_file: Path, tmp_path: Path
) -> None:
    run_dir, store = tmp_path / "run", tmp_path / "store"
    args = [
        "--preset",
        "sngan",
        *tiny_args("sngan"),
        "--batch-size",
        "4",
        "--data",
        str(shapes_file),
        "--run-dir",
        str(run_dir),
        "--no-progress",
        "--log-every",
        "1",
        "--checkpoint-every",
        "2",
    ]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",  # a free port of its own (--master-port 0 hangs)
        "-m",
        "training",
        "train",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*torchrun, *args, "--steps", "3"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # A resumed distributed run continues the counters.
    done = subprocess.run(
        [*torchrun, *args, "--steps", "5"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log = log_of(run_dir)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
    assert log[-1]["images_seen"] == 5 * 4 * 2  # steps x batch per process x processes
    info = json.loads((run_dir / "run.json").read_text())
    assert len(info["resumed_with"]) == 1

    exported = run_cli("export", str(run_dir), "--name", "shapes", "--store", str(store))
    assert exported.returncode == 0, exported.stderr
    manifest = ModelStore(store).manifest("shapes")
    assert manifest.training.steps == 5 and manifest.training.images_seen == 40

"""What can go wrong around checkpoints and stopping: a step saved twice, a crash while
saving, ranks that disagree on when to stop, a changed number of processes, and
``--deterministic`` on CUDA."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.training.test_train import log_of, tiny_args, tiny_config
from training import checkpoint as ckpt
from training.config import ConfigError
from training.data import load_dataset
from training.loop import Trainer, use_deterministic_algorithms
from training.resume import RunChangedWarning


def test_a_final_step_that_is_also_a_checkpoint_step_is_saved_once(
    shapes_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[int] = []
    real_save = ckpt.save_checkpoint

    def recording_save(folder: Path, step: int, *args: object) -> Path:
        saved.append(step)
        return real_save(folder, step, *args)

    monkeypatch.setattr(ckpt, "save_checkpoint", recording_save)
    cfg = tiny_config("dcgan", shapes_file, tmp_path / "run", steps=4, checkpoint_every=2)
    Trainer(cfg, load_dataset(shapes_file)).fit()
    assert saved == [2, 4]
    # Resumed at its last step with nothing left to do: nothing is written again.
    again = Trainer(cfg, load_dataset(shapes_file))
    again.resume(ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints"))
    again.fit()
    assert saved == [2, 4]


def checkpoint_of(step: int) -> tuple[dict[str, torch.Tensor], dict]:
    return {"w": torch.full((3,), float(step))}, {"step": step}


def test_saving_a_step_again_never_leaves_a_window_without_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 4, *checkpoint_of(4))

    def crash(*args: object) -> None:
        raise OSError("the machine went down here")

    # Whatever happens while the same step is written again, a complete step 4 stays.
    monkeypatch.setattr(ckpt.os, "rename", crash)
    monkeypatch.setattr(ckpt.os, "replace", crash)
    with contextlib.suppress(OSError):
        ckpt.save_checkpoint(folder, 4, *checkpoint_of(4))
    monkeypatch.undo()
    latest = ckpt.latest_checkpoint(folder)
    assert latest is not None and latest.name == "step-00000004"
    tensors, state = ckpt.load_checkpoint(latest)
    assert state == {"step": 4} and torch.equal(tensors["w"], torch.full((3,), 4.0))


def test_latest_is_the_newest_complete_checkpoint_whatever_the_pointer_says(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        ckpt.save_checkpoint(folder, step, *checkpoint_of(step))
    (folder / "step-00000006" / ckpt.TENSORS).unlink()  # a prune or crash left a part
    (folder / ckpt.LATEST).write_text("step-00000008\n")  # names a folder that is not there
    assert ckpt.latest_checkpoint(folder).name == "step-00000004"
    (folder / ckpt.LATEST).unlink()  # a crash before the pointer was first written
    assert ckpt.latest_checkpoint(folder).name == "step-00000004"


def test_step_folders_without_a_complete_one_refuse_a_silent_restart(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 2, *checkpoint_of(2))
    (folder / "step-00000002" / ckpt.STATE).unlink()
    with pytest.raises(ckpt.RunError, match="no complete checkpoint"):
        ckpt.latest_checkpoint(folder)
    assert ckpt.latest_checkpoint(tmp_path / "nothing-yet") is None


def test_a_changed_number_of_processes_is_said_and_the_run_continues(
    shapes_file: Path, tmp_path: Path
) -> None:
    data = load_dataset(shapes_file)
    cfg = tiny_config("sngan", shapes_file, tmp_path / "run", steps=2, amp="none")
    Trainer(cfg, data).fit()
    path = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    state = json.loads((path / ckpt.STATE).read_text())
    state["world"] = 2  # as if two processes had trained it
    (path / ckpt.STATE).write_text(json.dumps(state))
    resumed = Trainer(replace(cfg, steps=4), data)
    with pytest.warns(RunChangedWarning, match="2 processes.*now 1"):
        resumed.resume(path)
    resumed.fit()
    assert resumed.step == 4


def test_the_random_draws_of_a_step_depend_only_on_seed_rank_and_step(
    shapes_file: Path, tmp_path: Path
) -> None:
    """Nothing device-specific to save or restore: a resume on another device (or with
    another number of processes) draws from the same streams, as a function of the step."""
    data = load_dataset(shapes_file)
    a = Trainer(tiny_config("sngan", shapes_file, tmp_path / "a"), data)
    b = Trainer(tiny_config("sngan", shapes_file, tmp_path / "b"), data)
    b.step = a.step = 7
    first, second = a.draw_step(), b.draw_step()
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    b.step = 8
    assert not torch.equal(first.z, b.draw_step().z)
    tensors, _ = ckpt.load_checkpoint(save_once(a))
    assert not [k for k in tensors if k.startswith("rng.")]


def save_once(trainer: Trainer) -> Path:
    trainer.save()
    return ckpt.latest_checkpoint(trainer.run_dir / "checkpoints")


@pytest.fixture
def restore_determinism() -> Iterator[None]:
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def test_deterministic_on_cuda_sets_cublas_workspace_config(
    monkeypatch: pytest.MonkeyPatch, restore_determinism: None
) -> None:
    """cuBLAS is only deterministic with a fixed workspace (CUDA docs); checked here on
    the CPU, where no CUDA call is made: the environment is what is tested."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    use_deterministic_algorithms(torch.device("cpu"))
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    use_deterministic_algorithms(torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the other documented value
    use_deterministic_algorithms(torch.device("cuda"))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":1:1")
    with pytest.raises(ConfigError, match="CUBLAS_WORKSPACE_CONFIG"):
        use_deterministic_algorithms(torch.device("cuda"))


def worker_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (children of ``parent``)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        ranks = [v[5:] for v in environ if v.startswith(b"RANK=")]
        if ppid == parent and ranks:
            found[int(ranks[0])] = int(entry.name)
    return found


@pytest.mark.slow
def test_ranks_stop_together_when_one_of_them_is_asked_to(
    shapes_file: Path, tmp_path: Path
) -> None:
    """SIGTERM to rank 1 alone: both ranks stop after the same step and save once. (Each
    deciding alone, rank 1 went into the checkpoint's collectives while rank 0 went on
    training: a deadlock.)"""
    run_dir = tmp_path / "run"
    args = ["--preset", "sngan", *tiny_args("sngan"), "--batch-size", "4"]
    args += ["--data", str(shapes_file), "--run-dir", str(run_dir)]
    args += ["--no-progress", "--log-every", "1", "--steps", "100000", "--amp", "none"]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--standalone", "-m", "training", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "log.jsonl").is_file() or len(log_of(run_dir)) < 3:
            assert run.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        workers = worker_pids(run.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[1], signal.SIGTERM)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            for pid in worker_pids(run.pid).values():
                os.kill(pid, signal.SIGKILL)
            run.kill()
            run.wait()
    assert run.returncode == 0, output[-3000:]
    last = ckpt.latest_checkpoint(run_dir / "checkpoints")
    state = json.loads((last / ckpt.STATE).read_text())
    assert state["step"] == log_of(run_dir)[-1]["step"] < 100000


def test_fused_adam_resumed_on_channels_last_weights_takes_the_same_step() -> None:
    """Checkpoints hold contiguous tensors; fused Adam needs its moments in the weights'
    layout, or the update is wrong (not merely slower)."""
    torch.manual_seed(0)
    weight = torch.randn(4, 3, 5, 5).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(weight)
    params = [torch.nn.Parameter(weight.clone()) for _ in range(2)]
    straight = torch.optim.Adam([params[0]], lr=0.1, fused=True)
    params[0].grad = grad.clone()
    straight.step()
    tensors, plain = ckpt.flatten_optimizer("opt", straight)
    # As a checkpoint stores them: contiguous copies.
    tensors = {k: v.clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    resumed = torch.optim.Adam([params[1]], lr=0.1, fused=True)
    with torch.no_grad():
        params[1].copy_(params[0])
    ckpt.unflatten_optimizer("opt", resumed, tensors, plain)
    for p, opt in zip(params, (straight, resumed), strict=True):
        p.grad = grad.clone()
        opt.step()
    assert torch.equal(params[0], params[1])

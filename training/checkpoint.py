"""Checkpoints without pickle: tensors in safetensors, counters and settings in JSON.

A checkpoint is a folder ``step-XXXXXXXX/`` with ``tensors.safetensors`` (networks,
optimizer moments, EMA, RNG states) and ``state.json`` (counters, optimizer hyper-
parameters, Python/NumPy RNG states). It is written to a temporary folder and renamed,
and ``latest`` (a one-line file, replaced atomically) names the newest, so a crash never
leaves a half-written checkpoint where a resume would find it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.atomic import write_atomic

TENSORS = "tensors.safetensors"
STATE = "state.json"
LATEST = "latest"


class RunError(Exception):
    """A run directory or checkpoint is missing or unusable; the message names it."""


def flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer's state dict into tensors (by flat key) and JSON values."""
    sd = opt.state_dict()
    tensors, plain = {}, {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{idx}.{name}"] = value
            else:
                plain[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def unflatten_optimizer(
    prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for key, value in saved["plain"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})


def save_checkpoint(folder: Path, step: int, tensors: dict[str, torch.Tensor], state: dict) -> Path:
    """Write ``folder/step-XXXXXXXX`` atomically and point ``folder/latest`` at it."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
    try:
        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(cpu, str(tmp / TENSORS))
        (tmp / STATE).write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_atomic(folder / LATEST, final.name + "\n")
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip()
    return path if (path / STATE).is_file() else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(str(path / TENSORS)), json.loads((path / STATE).read_text())


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (never the one ``latest`` names)."""
    latest = latest_checkpoint(folder)
    found = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in found[: max(0, len(found) - keep)]:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True)


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    own = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    module.load_state_dict(own, strict=True)

"""Multi-process training with torchrun (DistributedDataParallel); one process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun describes in the environment (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank)


def gather_objects(d: Dist, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (just ``[value]`` without distribution)."""
    if not d.enabled:
        return [value]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, value)
    return out


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled:
        dist.destroy_process_group()

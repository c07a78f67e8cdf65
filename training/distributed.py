"""Multi-process training with torchrun (DistributedDataParallel); one process otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    # A gloo group for small control messages (CPU tensors) when the main group is NCCL,
    # so agreeing on a flag never waits for the GPU; None: the default group is gloo.
    control: Any = field(default=None, compare=False, repr=False)

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
    control = dist.new_group(backend="gloo") if backend == "nccl" else None
    return Dist(rank, world, local_rank, control)


def gather_objects(d: Dist, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (just ``[value]`` without distribution)."""
    if not d.enabled:
        return [value]
    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, value)
    return out


def any_rank(d: Dist, flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank. Every rank must call it at the
    same point: ranks then take the same branch, and none waits in a collective the others
    never enter (a stop decided per rank would deadlock at the next gradient all-reduce)."""
    if not d.enabled:
        return flag
    vote = torch.tensor([int(flag)], dtype=torch.int32)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX, group=d.control)
    return bool(vote.item())


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist) -> None:
    if d.enabled:
        dist.destroy_process_group()

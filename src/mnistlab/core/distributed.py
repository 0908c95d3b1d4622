"""Data-parallel jobs started by torchrun: who am I, how many are we, and which process writes.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for each process. In a job of several processes only
rank 0 writes files and prints: it holds core.writer.FILES, the other ranks core.writer.SILENT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mnistlab.core.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place in the job, from torchrun's variables (a single process without them)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", 1))
        if size == 1:  # no process group to be part of: a RANK left in the environment means nothing
            return World()
        w = World(int(os.environ.get("RANK", 0)), size, int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if w.size < 1 or not 0 <= w.rank < w.size or w.local_rank < 0:
        raise ConfigError(f"inconsistent torchrun variables: RANK={w.rank} WORLD_SIZE={w.size} LOCAL_RANK={w.local_rank}")
    return w


def init_process_group(w: World, device_type: str) -> bool:
    """Join the job's process group (NCCL on CUDA, gloo on the CPU); True if this call created it."""
    import torch.distributed as dist

    if not w.distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return True


def all_reduce_sum_(t):
    """Sum a tensor over all processes, in place (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def all_reduce_mean_(t):
    """Average a tensor over all processes, in place (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def from_main(value):
    """Rank 0's `value` on every process (itself in a single process): the run directory rank 0
    made, or the error it met making it, so that every rank stops with it instead of waiting."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()

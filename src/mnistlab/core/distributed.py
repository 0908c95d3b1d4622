"""Data-parallel jobs started by torchrun: who am I, how many are we, and which process writes.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK for each process. In a job of several processes only
rank 0 writes files and prints: it holds core.writer.FILES, the other ranks core.writer.SILENT.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

from mnistlab.core.errors import ConfigError, DistributedError, MnistlabError

# how long a process waits for its peers (start-up, every exchange): above a cluster's slowest
# start-up and checkpoint write, and what NCCL waits by default; tests use a few seconds
DEFAULT_TIMEOUT_S = 600

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")


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
        raise ConfigError(
            f"inconsistent torchrun variables: RANK={w.rank} WORLD_SIZE={w.size} LOCAL_RANK={w.local_rank}"
        )
    return w


def restartable() -> bool:
    """Whether torchrun may restart this job's group (--max-restarts N > 0): a restart reruns the same
    command, which must then continue the run (start or resume)."""
    return os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0") not in ("", "0")


def init_process_group(w: World, device_type: str, timeout_s: int = DEFAULT_TIMEOUT_S) -> bool:
    """Join the job's process group (NCCL on CUDA, gloo on the CPU); True if this call created it.
    Every wait for a peer, from the rendezvous on, ends after `timeout_s` with one line."""
    import torch.distributed as dist

    if not w.distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run without torchrun")
    try:
        dist.init_process_group(
            backend="nccl" if device_type == "cuda" else "gloo",
            timeout=timedelta(seconds=timeout_s),
            **_store_of_this_attempt(w, timeout_s),
        )
    except (ValueError, RuntimeError) as e:  # no MASTER_ADDR, a port in use, a peer that never came
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise DistributedError(
            f"rank {w.rank} of {w.size}: the process group at {where} did not start "
            f"(--dist-timeout {timeout_s} s): {_first(e)}"
        ) from None
    return True


def _store_of_this_attempt(w: World, timeout_s: int) -> dict:
    """No arguments (env:// as usual), except in a group that torchrun restarted: its agent's store still holds the
    addresses the killed attempt's processes published under the same keys, so each attempt gets keys of
    its own."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if attempt in ("", "0") or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    import torch.distributed as dist

    base = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        w.size,
        is_master=False,
        timeout=timedelta(seconds=timeout_s),
    )
    return {"store": dist.PrefixStore(f"mnistlab-attempt-{attempt}", base), "rank": w.rank, "world_size": w.size}


def _first(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def lost_peer_line(e: BaseException) -> str | None:
    """One line for an exchange that failed because a peer is gone, stopped or slower than the
    timeout (gloo and NCCL raise a RuntimeError naming themselves); None for anything else."""
    if "torch.distributed" not in sys.modules or not isinstance(e, RuntimeError):
        return None
    import torch.distributed as dist

    text = str(e)
    if not (isinstance(e, dist.DistError) or "gloo" in text or "NCCL" in text):
        return None
    rank = os.environ.get("RANK", "?")
    return f"rank {rank}: a peer of this data-parallel job is gone, stopped or slower than --dist-timeout: {_first(e)}"


def agree(error: MnistlabError | None) -> None:
    """Raise on every process the first error that any process met (in rank order), so that a
    failure on one machine (its data missing) is one line on all of them, not a wait or a gloo error."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        if error is not None:
            raise error
        return
    errors: list[MnistlabError | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    for rank, e in enumerate(errors):
        if e is not None:
            raise type(e)(str(e) if rank == dist.get_rank() else f"rank {rank}: {e}")


def all_reduce_sum_(t: Tensor) -> Tensor:
    """Sum a tensor over all processes, in place (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def all_reduce_mean_(t: Tensor) -> Tensor:
    """Average a tensor over all processes, in place (a no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def from_main(value: T) -> T:
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

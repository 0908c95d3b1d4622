"""Data-parallel scaling: one process against N (DistributedDataParallel), and how much of a step is talk.

Each configuration runs in fresh processes (gloo on the CPU, NCCL on CUDA) on random inputs of the
real shapes (the values do not change the time of a step). Per process it times `steps` training
steps at the global batch, twice: as DDP trains (gradients all-reduced every step) and under
`no_sync()` (the same compute, no communication). The difference is the communication's share.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.core.errors import ConfigError


@dataclass(frozen=True)
class ScalingCell:
    model: str
    device: str
    processes: int
    global_batch: int
    step_s: list[float]  # per-step time of each repeat, as trained (all-reduce included)
    local_step_s: list[float]  # the same steps under no_sync(): compute alone
    gradient_bytes: int

    @property
    def step_median_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def samples_per_s(self) -> float:
        return self.global_batch / self.step_median_s

    @property
    def communication_share(self) -> float:
        if self.processes == 1:
            return 0.0
        return max(0.0, 1 - statistics.median(self.local_step_s) / self.step_median_s)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "step_median_s": self.step_median_s, "samples_per_s": self.samples_per_s,
                "communication_share": self.communication_share}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_name: str, device_type: str, batch: int, steps: int,
            repeats: int, threads: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mnistlab.training.loop import make_optimizer
    from mnistlab.training.models import create_model

    torch.set_num_threads(threads)
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world,
                            init_method=f"tcp://127.0.0.1:{port}")
    try:
        torch.manual_seed(0)
        model = create_model(model_name).to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
        opt = make_optimizer(model, lr=0.01, momentum=0.5)
        x = torch.randn(batch // world, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (batch // world,), device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(x), y).backward()
            opt.step()

        def timed(sync: bool) -> float:
            ctx = ddp.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                dist.barrier()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                return (time.perf_counter() - t0) / steps

        for _ in range(max(3, steps // 10)):  # warm-up: buckets, allocator, thread pool
            step()
        synced, local = [], []
        for _ in range(repeats):  # interleaved, so that drift hits both alike
            synced.append(timed(True))
            local.append(timed(False))
        if rank == 0:
            grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            Path(out).write_text(json.dumps({"step_s": synced, "local_step_s": local, "gradient_bytes": grad_bytes}))
    finally:
        dist.destroy_process_group()


def measure_scaling(model: str, device_type: str, processes: list[int], *, batch: int = 64, steps: int = 50,
                    repeats: int = 3) -> list[ScalingCell]:
    """Time `model` at global batch `batch` with each number of processes in `processes`."""
    import torch.multiprocessing as mp

    cores = os.cpu_count() or 1
    cells = []
    for n in processes:
        if batch % n:
            raise ConfigError(f"--batch-size {batch} must divide evenly over {n} processes")
        if device_type == "cuda" and n > torch.cuda.device_count():
            raise ConfigError(f"--nproc {n}: only {torch.cuda.device_count()} CUDA device(s) here")
        # the CPU's cores are shared out, so that N processes use no more of the machine than one
        threads = max(1, cores // n) if device_type == "cpu" else 1
        with tempfile.TemporaryDirectory(prefix="mnistlab-scaling-") as tmp:
            out = os.path.join(tmp, "rank0.json")
            mp.spawn(_worker, args=(n, _free_port(), model, device_type, batch, steps, repeats, threads, out),
                     nprocs=n, join=True)
            data = json.loads(Path(out).read_text())
        cells.append(ScalingCell(model, device_type, n, batch, data["step_s"], data["local_step_s"],
                                 data["gradient_bytes"]))
    return cells


UNSTABLE_SPREAD = 1.25  # max/min of a cell's repeats beyond which its figure is not to be trusted


def scaling_observations(cells: list[ScalingCell]) -> list[str]:
    """What the measurement shows, in sentences computed from it."""
    out = [f"unstable: {c.model} with {c.processes} process(es) on {c.device} varied {max(c.step_s) / min(c.step_s):.1f}x "
           f"between repeats (another process used the machine); rerun on a quiet machine"
           for c in cells if min(c.step_s) > 0 and max(c.step_s) / min(c.step_s) > UNSTABLE_SPREAD]
    by_key: dict[tuple[str, str], dict[int, ScalingCell]] = {}
    for c in cells:
        by_key.setdefault((c.model, c.device), {})[c.processes] = c
    for (model, device), group in by_key.items():
        one = group.get(1)
        for n, c in sorted(group.items()):
            if n == 1 or one is None:
                continue
            speed = one.step_median_s / c.step_median_s
            word = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower"
            compute = statistics.median(c.local_step_s)
            out.append(
                f"{model} on {device}: {n} processes are {word} than one at global batch {c.global_batch} "
                f"({c.step_median_s * 1e3:.2f} against {one.step_median_s * 1e3:.2f} ms per step). "
                f"{c.communication_share:.0%} of each step is the all-reduce of {c.gradient_bytes / 1e6:.2f} MB of "
                f"gradients; the compute per process is {compute * 1e3:.2f} ms for {c.global_batch // n} samples. "
                + ("A model this small has too little work per step to hide the communication: data parallelism "
                   "pays off when a step's compute is large against the gradient exchange."
                   if speed < 1.5 else "The compute per step is large enough to hide most of the exchange."))
    return out


def format_scaling(cells: list[ScalingCell]) -> str:
    head = f"{'model':<6} {'device':<6} {'procs':>5} {'ms/step':>9} {'min-max':>15} {'samples/s':>10} {'comm':>6}"
    lines = [head, "-" * len(head)]
    for c in cells:
        lines.append(f"{c.model:<6} {c.device:<6} {c.processes:>5} {c.step_median_s * 1e3:>9.2f} "
                     f"{min(c.step_s) * 1e3:>7.2f}-{max(c.step_s) * 1e3:<7.2f} {c.samples_per_s:>10,.0f} "
                     f"{c.communication_share:>6.0%}")
    lines.append("ms/step: median over repeats (all-reduce included); comm: share of the step spent communicating "
                 "(the step against the same step under no_sync())")
    return "\n".join(lines + [""] + scaling_observations(cells))

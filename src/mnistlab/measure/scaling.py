"""Data-parallel scaling: one process against N (DistributedDataParallel), and how much of a step is talk.

Each configuration runs in fresh processes (gloo on the CPU, NCCL on CUDA) on random inputs of the
real shapes (the values do not change the time of a step). Per process it times `steps` training
steps at the global batch, twice: as DDP trains (gradients all-reduced every step) and under
`no_sync()` (the same compute, no communication). The difference is the communication's share.
Each configuration runs in its own processes, one after the other, so the speed-up of N processes
over one is a Ratio of repeats that did not run side by side: core/timing.py's stability rule
(range of the repeats, one repeat, a busy machine) says when it is not to be trusted.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mnistlab.core.environment import environment, load_snapshot
from mnistlab.core.errors import ConfigError, ModelError
from mnistlab.core.failures import is_builtin_model
from mnistlab.core.rundir import read_json_object
from mnistlab.core.schema import NONEMPTY, check
from mnistlab.core.timing import LOAD_SCHEMA, Load, Ratio, Stability, TimedSteps, time_steps
from mnistlab.core.writer import FILES
from mnistlab.data.datasets import DataShape
from mnistlab.measure.table import text_table

_TIMES = ["positive seconds", NONEMPTY]
WORKER_SCHEMA = {"step_s": _TIMES, "local_step_s": _TIMES, "gradient_bytes": "count"}
SCALING_CELL_SCHEMA = {
    "model": "text",
    "device": "text",
    "processes": "positive count",
    "global_batch": "positive count",
    **WORKER_SCHEMA,
}
SCALING_SCHEMA = {"cells": [SCALING_CELL_SCHEMA], "load?": LOAD_SCHEMA, "env?": {"*": "any"}}


@dataclass
class ScalingCell(TimedSteps):
    model: str
    device: str
    processes: int
    global_batch: int
    step_s: list[float]  # per-step time of each repeat, as trained (all-reduce included)
    local_step_s: list[float]  # the same steps under no_sync(): compute alone
    gradient_bytes: int
    load: Load = field(default_factory=dict, repr=False, compare=False)  # the run's (not per cell in the file)

    FIELDS: ClassVar[tuple[str, ...]] = tuple(SCALING_CELL_SCHEMA)

    @property
    def samples_per_s(self) -> float:
        return self.global_batch / self.step_median_s

    @property
    def communication_share(self) -> float:
        if self.processes == 1:
            return 0.0
        return max(0.0, 1 - statistics.median(self.local_step_s) / self.step_median_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in self.FIELDS},
            "step_median_s": self.step_median_s,
            "step_spread": self.step.to_dict(),
            "samples_per_s": self.samples_per_s,
            "communication_share": self.communication_share,
            "stability": self.stability.to_dict(),
        }


@dataclass
class ScalingResult:
    FILE: ClassVar[str] = "scaling.json"

    cells: list[ScalingCell]
    load: dict[str, Any] = field(default_factory=dict)  # {"start": load_snapshot(), "end": ...}
    env: dict[str, Any] = field(default_factory=dict)

    def speedups(self) -> list[tuple[ScalingCell, ScalingCell, Ratio]]:
        """(one process, N processes, one's step time over N's) for each model and device."""
        out = []
        by_key: dict[tuple[str, str], dict[int, ScalingCell]] = {}
        for c in self.cells:
            by_key.setdefault((c.model, c.device), {})[c.processes] = c
        for group in by_key.values():
            one = group.get(1)
            for n, c in sorted(group.items()):
                if n != 1 and one is not None:
                    out.append((one, c, judged(Ratio.paired(one.step_s, c.step_s, self.load), c)))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "load": self.load,
            "cells": [c.to_dict() for c in self.cells],
            "speedups": [
                {"model": c.model, "device": c.device, "processes": c.processes, **r.to_dict()}
                for _, c, r in self.speedups()
            ],
            "observations": scaling_observations(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> ScalingResult:
        """A validated scaling.json (one CheckpointError line naming the file and field)."""
        check(data, SCALING_SCHEMA, where)
        load = data.get("load") or {}
        return cls(
            [ScalingCell(**{k: c[k] for k in ScalingCell.FIELDS}, load=load) for c in data["cells"]],
            dict(load),
            dict(data.get("env") or {}),
        )


SLACK = 1.25  # a smaller batch per process may run a little faster per sample (caches): no more than this


def ceiling(c: ScalingCell) -> float:
    """The most N processes can be faster than one when `communication_share` of each of their steps
    is the all-reduce: N x (1 - share), each process's compute being at best 1/N of one's."""
    return c.processes * (1 - c.communication_share)


def judged(ratio: Ratio, c: ScalingCell) -> Ratio:
    """The speed-up, made unstable where it contradicts the communication share measured in the same
    processes (issue 20: '44x faster' beside '71% of each step is the all-reduce')."""
    bound = ceiling(c) * SLACK
    if ratio.spread.n == 0 or ratio.median <= bound:
        return ratio
    why = (
        f"unstable: {ratio.median:.1f}x cannot be, with {c.communication_share:.0%} of each step in the "
        f"all-reduce {c.processes} processes can be at most about {ceiling(c):.1f}x faster: the runs saw "
        f"different loads; rerun on a quiet machine"
    )
    prior = ratio.stability.reason.removeprefix("unstable: ") if ratio.stability.reason else None
    return Ratio(ratio.ratios, Stability(False, why + (f"; {prior}" if prior else "")), ratio.of_medians)


def why_it_scales(c: ScalingCell, ratio: Ratio) -> str:
    """The reason, from the same judged numbers as the speed-up: none where the speed-up is not trusted."""
    if not ratio.stability.stable:
        return "No reason is given for a speed-up that is not trusted."
    if c.communication_share >= 0.5:
        return (
            "Most of each step is the exchange: a model this small has too little work per step to hide it; "
            "data parallelism pays off when a step's compute is large against the gradient exchange."
        )
    if ratio.spread.min > 1:
        return "The compute per step is large enough to hide most of the exchange."
    return "Less than half of each step is the exchange, yet the processes are not clearly faster than one."


_ERROR_TYPE = re.compile(r"^(?:[\w.]+\.)?\w+(?:Error|Exception): (?=model )")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(
    rank: int,
    world: int,
    port: int,
    model_name: str,
    shape: DataShape,
    device_type: str,
    batch: int,
    steps: int,
    repeats: int,
    threads: int,
    out: str,
) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mnistlab.training.loop import make_optimizer
    from mnistlab.training.models import create_model

    torch.set_num_threads(threads)
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    dist.init_process_group(
        "nccl" if device_type == "cuda" else "gloo", rank=rank, world_size=world, init_method=f"tcp://127.0.0.1:{port}"
    )
    try:
        torch.manual_seed(0)
        model = create_model(model_name, shape).to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
        opt = make_optimizer(model, lr=0.01, momentum=0.5)
        x = torch.randn(batch // world, *shape.sample, device=device)
        y = torch.randint(0, shape.classes, (batch // world,), device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(ddp(x), y).backward()
            opt.step()

        def timed(sync: bool) -> float:
            with ddp.no_sync() if not sync else contextlib.nullcontext():
                dist.barrier()
                return time_steps(step, steps, device)

        for _ in range(max(3, steps // 10)):  # warm-up: buckets, allocator, thread pool
            step()
        synced, local = [], []
        for _ in range(repeats):  # interleaved, so that drift hits both alike
            synced.append(timed(True))
            local.append(timed(False))
        if rank == 0:
            grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
            FILES.json(Path(out), {"step_s": synced, "local_step_s": local, "gradient_bytes": grad_bytes})
    finally:
        dist.destroy_process_group()


def measure_scaling(
    models: Sequence[str],
    device_type: str,
    processes: list[int],
    *,
    batch: int = 64,
    steps: int = 50,
    repeats: int = 3,
    shape: DataShape | None = None,
    scratch: Path | None = None,
) -> ScalingResult:
    """Time each model at global batch `batch` with each number of processes in `processes`. `scratch`: where
    the workers' temporary folder goes (the job's own folder: a SIGKILL leaves it there, not in /tmp)."""
    import torch.multiprocessing as mp

    from mnistlab.core.threads import worker_threads
    from mnistlab.training.models import as_shape

    load_start = load_snapshot()
    cells, per_process = [], {}
    for n in processes:  # every configuration checked before any is measured
        if batch % n:
            raise ConfigError(f"--batch-size {batch} must divide evenly over {n} processes")
        if device_type == "cuda" and n > torch.cuda.device_count():
            raise ConfigError(f"--nproc {n}: only {torch.cuda.device_count()} CUDA device(s) here")
    for model, n in ((m, n) for m in models for n in processes):
        # the CPUs left free are shared out, so that N processes use no more of the machine than one
        threads = per_process[n] = worker_threads(n) if device_type == "cpu" else 1
        with tempfile.TemporaryDirectory(prefix=".scaling-" if scratch else "mnistlab-scaling-", dir=scratch) as tmp:
            out = os.path.join(tmp, "rank0.json")
            try:
                mp.spawn(
                    _worker,
                    args=(n, _free_port(), model, as_shape(shape), device_type, batch, steps, repeats, threads, out),
                    nprocs=n,
                    join=True,
                )
            except mp.ProcessRaisedException as e:  # a worker's exception, with its traceback as text
                last = [line for line in str(e).strip().splitlines() if line.strip()][-1].strip()
                if is_builtin_model(model):
                    raise
                last = _ERROR_TYPE.sub("", last)  # 'mnistlab.core.errors.ConfigError: model spec ...': the words
                raise ModelError(f"model {model} failed in a data-parallel process: {last[:200]}") from None
            except mp.ProcessExitedException as e:  # a worker gone without an exception: os._exit, a signal
                if is_builtin_model(model):
                    raise
                how = f"was killed by signal {e.signal_name}" if e.signal_name else f"exited with code {e.exit_code}"
                raise ModelError(
                    f"model {model}: a data-parallel process {how} before it finished (the model's code ended it)"
                ) from None
            data = check(read_json_object(Path(out)), WORKER_SCHEMA, out)
        cells.append(
            ScalingCell(model, device_type, n, batch, data["step_s"], data["local_step_s"], data["gradient_bytes"])
        )
    load = {"start": load_start, "end": load_snapshot()}
    for c in cells:
        c.load = load
    return ScalingResult(cells, load, {**environment(), "threads_per_process": per_process})


def scaling_observations(result: ScalingResult) -> list[str]:
    """What the measurement shows, in sentences computed from it and its judgements."""
    out = [
        f"{c.model} with {c.processes} process{'es' if c.processes > 1 else ''} on {c.device}: {c.stability.reason}"
        for c in result.cells
        if not c.stability.stable
    ]
    for one, c, ratio in result.speedups():
        n = c.processes
        compute = statistics.median(c.local_step_s)
        out.append(
            f"{c.model} on {c.device}: {n} processes against one at global batch {c.global_batch}: "
            f"{ratio.marked()} "
            f"({c.step_median_s * 1e3:.2f} against {one.step_median_s * 1e3:.2f} ms per step). "
            f"{c.communication_share:.0%} of each step is the all-reduce of {c.gradient_bytes / 1e6:.2f} MB of "
            f"gradients; the compute per process is {compute * 1e3:.2f} ms for {c.global_batch // n} samples. "
            + why_it_scales(c, ratio)
        )
    return out


def scaling_rows(result: ScalingResult, dash: str = "-") -> list[list[str]]:
    """One row per configuration: model, device, processes, median ms per step, its range, samples/s, the
    all-reduce's share, stability (the text table's and the report's)."""
    return [
        [
            c.model,
            c.device,
            str(c.processes),
            f"{c.step_median_s * 1e3:.2f}",
            f"{c.step.min * 1e3:.2f}{dash}{c.step.max * 1e3:.2f}",
            f"{c.samples_per_s:,.0f}",
            f"{c.communication_share:.0%}",
            "stable" if c.stability.stable else "unstable",
        ]
        for c in result.cells
    ]


def format_scaling(result: ScalingResult) -> str:
    rows = scaling_rows(result)
    lines = [
        text_table(["model", "device", "procs", "ms/step", "min-max", "samples/s", "comm", "stability"], rows, left=2)
    ]
    lines.append(
        "ms/step: median over repeats (all-reduce included); comm: share of the step spent communicating "
        "(the step against the same step under no_sync()); stability: core/timing.py's one rule"
    )
    return "\n".join(lines + [""] + scaling_observations(result))

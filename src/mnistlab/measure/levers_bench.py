"""The implementation axis of `mnistlab bench --implementations ...`: what each speed lever buys.

For each device and model, every implementation (eager fp32, channels-last, bf16-mixed, ...,
compiled, CUDA-graphed) builds its training step with training.levers, on device-resident data
and the notebook's SGD. Each gets an untimed warm-up (its compile and capture are timed apart
and reported), then the repeats are interleaved (A B C A B C ...), so that a change in the
machine's load hits every implementation alike, and speed-ups are ratios from the same run.
Utilisation is against the measured matmul peak of the dtype that the implementation computes in.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.defaults import DEFAULT_BATCH_SIZE, IMPLEMENTATIONS
from mnistlab.core.device import device_name, resolve_device, synchronize
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import write_json
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.measure.bench import measure_matmul_peak
from mnistlab.measure.profiling import profile_model
from mnistlab.training.levers import Levers, make_step, prepare_model, warm_up
from mnistlab.training.loop import make_optimizer
from mnistlab.training.models import create_model

IMPLEMENTATION_LEVERS: dict[str, Levers] = {
    "eager": Levers(),
    "channels-last": Levers(channels_last=True),
    "bf16-mixed": Levers(precision="bf16-mixed"),
    "bf16-mixed+channels-last": Levers(precision="bf16-mixed", channels_last=True),
    "16-mixed": Levers(precision="16-mixed"),
    "compiled": Levers(compile="default"),
    "cuda-graphs": Levers(cuda_graphs=True),
}
assert tuple(IMPLEMENTATION_LEVERS) == IMPLEMENTATIONS


@dataclass
class ImplCell:
    model: str
    device: str
    implementation: str
    levers: str  # Levers.describe()
    compute_dtype: str
    batch_size: int
    steps_timed: int
    warmup_s: float  # untimed warm-up, compile and capture included
    step_s: list[float] = field(default_factory=list)  # per-step time of each interleaved repeat
    train_step_flops: int = 0
    peak_flops_per_s: float = 0.0  # of compute_dtype
    unavailable: str | None = None  # the one-line reason a lever does not exist here

    @property
    def step_median_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def utilisation(self) -> float:
        return self.train_step_flops / self.step_median_s / self.peak_flops_per_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.step_s:
            d.update(step_median_s=self.step_median_s, step_min_s=min(self.step_s), step_max_s=max(self.step_s),
                     utilisation=self.utilisation)
        return d


@dataclass
class LeversBench:
    cells: list[ImplCell]
    peaks: dict[str, dict[str, float]]  # device -> dtype name -> FLOP/s
    devices: dict[str, str]
    settings: dict[str, Any]

    def cell(self, device: str, model: str, implementation: str) -> ImplCell | None:
        return next((c for c in self.cells if (c.device, c.model, c.implementation) == (device, model, implementation)
                     and not c.unavailable), None)

    def speedup(self, c: ImplCell) -> float | None:
        """Eager fp32's median step over this one's, both from this run."""
        base = self.cell(c.device, c.model, "eager")
        return base.step_median_s / c.step_median_s if base and c.step_s else None

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "devices": self.devices, "peaks_flops_per_s": self.peaks,
                "cells": [{**c.to_dict(), "speedup_vs_eager": self.speedup(c)} for c in self.cells],
                "observations": observations(self)}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def run_levers_bench(split: RawSplit, spec: DatasetSpec, *, models: list[str], devices: list[str],
                     implementations: list[str], batch_size: int = DEFAULT_BATCH_SIZE, steps: int = 50,
                     repeats: int = 3, warmup: int = 5, log: Callable[[str], None] = print) -> LeversBench:
    unknown = [i for i in implementations if i not in IMPLEMENTATION_LEVERS]
    if unknown:
        raise ConfigError(f"unknown implementation {unknown[0]!r}; choose from: {', '.join(IMPLEMENTATIONS)}")
    cells, peaks, names = [], {}, {}
    flops = {m: profile_model(m, batch_size).train_step_flops for m in models}
    for dev in (resolve_device(d) for d in devices):
        names[dev.type] = device_name(dev)
        loader = DeviceLoader(split, spec.mean, spec.std, batch_size, dev, shuffle=True, seed=0)
        batches = itertools.chain.from_iterable(loader.batches(e) for e in itertools.count(1))
        for model_name in models:
            live: list[tuple[ImplCell, Callable]] = []
            for impl in implementations:
                levers = IMPLEMENTATION_LEVERS[impl]
                cell = ImplCell(model_name, dev.type, impl, levers.describe(), _dtype_name(levers.compute_dtype),
                                batch_size, steps, 0.0, train_step_flops=flops[model_name])
                cells.append(cell)
                try:
                    levers.check(dev)
                except ConfigError as e:
                    cell.unavailable = str(e)
                    log(f"  {dev.type}/{model_name}/{impl}: not available here ({e})")
                    continue
                dtype = _dtype_name(levers.compute_dtype)
                if dtype not in peaks.setdefault(dev.type, {}):
                    peaks[dev.type][dtype] = measure_matmul_peak(dev, dtype=levers.compute_dtype)
                    log(f"{dev.type}: {names[dev.type]}, measured {dtype} matmul peak "
                        f"{peaks[dev.type][dtype] / 1e9:,.1f} GFLOP/s")
                cell.peak_flops_per_s = peaks[dev.type][dtype]
                torch.manual_seed(0)
                model = prepare_model(create_model(model_name), levers, dev)
                step = make_step(model, make_optimizer(model, lr=0.01, momentum=0.5), levers, dev,
                                 batch_size=batch_size, sample_shape=tuple(loader.x.shape[1:]))
                x, y = next(batches)
                synchronize(dev)
                t0 = time.perf_counter()
                warm_up(step, x.clone(), y.clone(), steps=max(warmup, 1))
                synchronize(dev)
                cell.warmup_s = time.perf_counter() - t0
                live.append((cell, step))
                log(f"  {dev.type}/{model_name}/{impl}: warmed up in {cell.warmup_s:.2f} s")
            for _ in range(repeats):  # interleaved: every implementation once per round
                for cell, step in live:
                    data = [next(batches) for _ in range(steps)]  # gathered before the clock starts
                    synchronize(dev)
                    t0 = time.perf_counter()
                    for x, y in data:
                        step(x, y)
                    synchronize(dev)
                    cell.step_s.append((time.perf_counter() - t0) / steps)
    settings = {"batch_size": batch_size, "steps": steps, "repeats": repeats, "warmup": warmup,
                "implementations": implementations, "dataset": spec.name, "torch": torch.__version__,
                "torch_threads": torch.get_num_threads()}
    return LeversBench(cells, peaks, names, settings)


def observations(result: LeversBench) -> list[str]:
    """Why each lever helped or did not, from this run's numbers."""
    out = []
    for c in result.cells:
        if c.unavailable:
            continue
        base = result.cell(c.device, c.model, "eager")
        s = result.speedup(c)
        if c.implementation == "eager" or base is None or s is None:
            out.append(f"{c.device}/{c.model} eager fp32: {c.step_median_s * 1e3:.2f} ms per step, "
                       f"{c.utilisation:.0%} of the measured float32 matmul peak.")
            continue
        word = f"{s:.2f}x faster than" if s >= 1 else f"{1 / s:.2f}x slower than"
        why = []
        if c.compute_dtype != "float32":
            gain = c.peak_flops_per_s / base.peak_flops_per_s
            why.append(f"its matmul peak in {c.compute_dtype} is {gain:.1f}x float32's and it reaches "
                       f"{c.utilisation:.0%} of it (eager fp32: {base.utilisation:.0%} of float32's)")
        if "channels-last" in c.implementation:
            why.append("channels-last lets the convolutions skip the layout reorders around oneDNN/cuDNN kernels"
                       if s >= 1 else "for this model the layout change costs more than it saves")
        if c.implementation == "compiled":
            why.append(f"compiling took {c.warmup_s:.1f} s (untimed); fused elementwise work "
                       + ("pays off" if s >= 1 else "does not pay off when the matmuls and convs dominate"))
        if c.implementation == "cuda-graphs":
            why.append("one graph launch replaces every per-kernel launch of the step")
        out.append(f"{c.device}/{c.model} {c.implementation}: {c.step_median_s * 1e3:.2f} ms per step, {word} "
                   f"eager fp32 in the same run" + (f"; {'; '.join(why)}" if why else "") + ".")
    return out


def format_table(result: LeversBench) -> str:
    head = (f"{'device/model':<14} {'implementation':<26} {'ms/step':>9} {'min-max':>15} {'vs eager':>9} "
            f"{'dtype':>9} {'util':>6} {'warm-up s':>9}")
    lines = [head, "-" * len(head)]
    for c in result.cells:
        where = f"{c.device}/{c.model}"
        if c.unavailable:
            lines.append(f"{where:<14} {c.implementation:<26} {'not available on ' + c.device:>40}")
            continue
        s = result.speedup(c)
        rng = f"{min(c.step_s) * 1e3:.2f}-{max(c.step_s) * 1e3:.2f}"
        vs = "1.00x" if c.implementation == "eager" else (f"{s:.2f}x" if s is not None else "-")
        lines.append(f"{where:<14} {c.implementation:<26} {c.step_median_s * 1e3:>9.2f} {rng:>15} {vs:>9} "
                     f"{c.compute_dtype:>9} {c.utilisation:>6.0%} {c.warmup_s:>9.2f}")
    lines.append("ms/step: median of the interleaved repeats (min-max beside it); vs eager: eager fp32's median over "
                 "this one's; util: achieved FLOP/s over the measured matmul peak of the dtype the step computes in")
    return "\n".join(lines)


def write_levers_bench(result: LeversBench, out_dir) -> str:
    peaks = [f"{d}: {result.devices[d]}, measured matmul peaks: "
             + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in p.items()) for d, p in result.peaks.items()]
    text = "\n".join([*peaks, format_table(result), "", *observations(result)])
    write_json(out_dir / "levers.json", result.to_dict())
    write_atomic(out_dir / "levers.txt", (text + "\n").encode())
    return text

"""The device x pipeline x model benchmark: epoch time, samples/s, and where each step's time goes.

For every cell: a warm-up, then `repeats` free-running timings of `steps` steps (the figure
reported), then one instrumented pass that times each phase of a step (data, host-to-device
copy, forward, backward, optimizer) with a synchronisation at every phase boundary — on a
GPU with CUDA events — so the phases show where the time goes. A short GEMM on each device
gives its measured matmul peak, against which the achieved FLOP/s of a cell is a utilisation.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.defaults import DEFAULT_BATCH_SIZE, PIPELINES
from mnistlab.core.device import device_name, resolve_device, synchronize
from mnistlab.core.rundir import write_json
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.training.models import create_model
from mnistlab.measure.profiling import profile_model
from mnistlab.data.notebook_pipeline import reference_loader
from mnistlab.training.loop import make_optimizer

PHASES = ("data", "h2d", "forward", "backward", "optimizer")
PHASE_WORDS = {"data": "data loading (fetch and collate)", "h2d": "the host-to-device copy",
               "forward": "the forward pass", "backward": "the backward pass", "optimizer": "the optimizer step"}
COMPUTE_BOUND_UTILISATION = 0.30  # of the measured matmul peak; the CPU CNN runs at ~35-45%
INPUT_BOUND_SHARE = 0.50  # of the step spent in data + h2d


@dataclass
class Cell:
    model: str
    device: str
    pipeline: str
    implementation: str
    batch_size: int
    steps_timed: int
    repeats: int
    steps_per_epoch: int
    extrapolated: bool
    step_s: list[float]  # per-step time of each free-running repeat
    phases_s: dict[str, float]  # mean per step, instrumented pass
    instrumented_step_s: float  # mean per step of the instrumented pass, outer timer
    train_step_flops: int  # for one batch
    peak_flops_per_s: float

    @property
    def key(self) -> str:
        return f"{self.pipeline}/{self.device}/{self.model}"

    @property
    def step_median_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def epoch_s_min(self) -> float:
        return min(self.step_s) * self.steps_per_epoch

    @property
    def epoch_s_median(self) -> float:
        return self.step_median_s * self.steps_per_epoch

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.step_median_s

    @property
    def achieved_flops_per_s(self) -> float:
        return self.train_step_flops / self.step_median_s

    @property
    def utilisation(self) -> float:
        return self.achieved_flops_per_s / self.peak_flops_per_s

    def share(self, *phases: str) -> float:
        return sum(self.phases_s[p] for p in phases) / self.instrumented_step_s

    def dominant_phase(self) -> str:
        return max(PHASES, key=lambda p: self.phases_s[p])

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key, "step_median_s": self.step_median_s,
                "epoch_s_min": self.epoch_s_min, "epoch_s_median": self.epoch_s_median,
                "samples_per_s": self.samples_per_s, "achieved_flops_per_s": self.achieved_flops_per_s,
                "utilisation": self.utilisation}


def measure_matmul_peak(device: torch.device, seconds: float = 0.5) -> float:
    """Best FLOP/s of a square float32 matmul on `device`, with torch's current precision settings."""
    n = 1024 if device.type == "cpu" else 4096
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    synchronize(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(5 if device.type == "cpu" else 20):
            c = a @ b
        synchronize(device)
        reps = 5 if device.type == "cpu" else 20
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    del c
    return best


class _PhaseClock:
    """Times phases of a step: perf_counter after a synchronisation; CUDA events on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.total = dict.fromkeys(PHASES, 0.0)

    def run(self, phase: str, fn: Callable[[], Any]) -> Any:
        synchronize(self.device)
        if self.cuda and phase != "data":  # data is host work: the wall clock is the right one
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            end.synchronize()
            self.total[phase] += start.elapsed_time(end) / 1000.0
            return out
        t0 = time.perf_counter()
        out = fn()
        synchronize(self.device)
        self.total[phase] += time.perf_counter() - t0
        return out


def _stream(pipeline: str, split: RawSplit, spec: DatasetSpec, batch_size: int, device: torch.device,
            seed: int) -> tuple[Callable[[], Iterator], str]:
    """An endless batch iterator factory and a description of its implementation."""
    if pipeline == "resident":
        loader = DeviceLoader(split, spec.mean, spec.std, batch_size, device, shuffle=True, seed=seed)
        return (lambda: itertools.chain.from_iterable(loader.batches(e) for e in itertools.count(1)),
                "device-resident tensors (mnistlab)")
    ref = reference_loader(split, spec.mean, spec.std, batch_size, seed)
    return (lambda: itertools.chain.from_iterable(ref for _ in itertools.count()),
            f"per-sample PIL + DataLoader ({ref.dataset.implementation})")


def bench_cell(model_name: str, device: torch.device, pipeline: str, split: RawSplit, spec: DatasetSpec, *,
               batch_size: int = DEFAULT_BATCH_SIZE, steps: int | None = 100, repeats: int = 3, warmup: int = 10,
               peak: float, seed: int = 0) -> Cell:
    steps_per_epoch = -(-len(split) // batch_size)
    n = steps_per_epoch if steps is None else min(steps, steps_per_epoch)
    torch.manual_seed(seed)
    model = create_model(model_name, len(spec.classes)).to(device)
    opt = make_optimizer(model, lr=0.01, momentum=0.5)
    make_iter, impl = _stream(pipeline, split, spec, batch_size, device, seed)
    it = make_iter()

    def step() -> None:
        x, y = next(it)
        x, y = x.to(device), y.to(device)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    step_s = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        synchronize(device)
        step_s.append((time.perf_counter() - t0) / n)

    clock = _PhaseClock(device)
    outer = 0.0
    for _ in range(n):
        synchronize(device)
        t0 = time.perf_counter()
        x, y = clock.run("data", lambda: next(it))
        x, y = clock.run("h2d", lambda: (x.to(device), y.to(device)))
        loss = clock.run("forward", lambda: F.cross_entropy(model(x), y))
        clock.run("backward", loss.backward)
        clock.run("optimizer", lambda: (opt.step(), opt.zero_grad(set_to_none=True)))
        synchronize(device)
        outer += time.perf_counter() - t0
    return Cell(model=model_name, device=device.type, pipeline=pipeline, implementation=impl,
                batch_size=batch_size, steps_timed=n, repeats=repeats, steps_per_epoch=steps_per_epoch,
                extrapolated=n < steps_per_epoch, step_s=step_s,
                phases_s={p: v / n for p, v in clock.total.items()}, instrumented_step_s=outer / n,
                train_step_flops=profile_model(model_name, batch_size, len(spec.classes)).train_step_flops, peak_flops_per_s=peak)


@dataclass
class BenchResult:
    cells: list[Cell]
    peaks: dict[str, float]
    devices: dict[str, str]  # device type -> name
    settings: dict[str, Any]

    def cell(self, pipeline: str, device: str, model: str) -> Cell | None:
        return next((c for c in self.cells if (c.pipeline, c.device, c.model) == (pipeline, device, model)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "devices": self.devices, "peaks_flops_per_s": self.peaks,
                "cells": [c.to_dict() for c in self.cells], "observations": observations(self)}


def run_bench(split: RawSplit, spec: DatasetSpec, *, models: list[str], devices: list[str], pipelines: list[str],
              batch_size: int = DEFAULT_BATCH_SIZE, steps: int | None = 100, repeats: int = 3, warmup: int = 10,
              log: Callable[[str], None] = print) -> BenchResult:
    devs = [resolve_device(d) for d in devices]
    peaks, names, cells = {}, {}, []
    for dev in devs:
        peaks[dev.type] = measure_matmul_peak(dev)
        names[dev.type] = device_name(dev)
        log(f"{dev.type}: {names[dev.type]}, measured float32 matmul peak {peaks[dev.type] / 1e9:,.1f} GFLOP/s")
        for model, pipeline in itertools.product(models, pipelines):
            log(f"  timing {pipeline}/{dev.type}/{model} ...")
            cells.append(bench_cell(model, dev, pipeline, split, spec, batch_size=batch_size, steps=steps,
                                    repeats=repeats, warmup=warmup, peak=peaks[dev.type]))
    settings = {"batch_size": batch_size, "steps": steps, "repeats": repeats, "warmup": warmup,
                "samples": len(split), "dataset": spec.name, "torch": torch.__version__}
    return BenchResult(cells, peaks, names, settings)


def _bound(c: Cell) -> str:
    if c.share("data", "h2d") >= INPUT_BOUND_SHARE:
        return "input-bound"
    if c.utilisation >= COMPUTE_BOUND_UTILISATION:
        return "compute-bound"
    return "overhead-bound"


def observations(result: BenchResult) -> list[str]:
    """Sentences computed from this run's numbers: what dominates each cell, and why speed-ups are what they are."""
    out = []
    for c in result.cells:
        dom = c.dominant_phase()
        why = {
            "input-bound": f"input-bound: {c.share('data', 'h2d'):.0%} of the step is spent getting the batch in",
            "compute-bound": f"compute-bound: it runs at {c.utilisation:.0%} of the measured matmul peak",
            "overhead-bound": (f"overhead-bound: only {c.utilisation:.1%} of the measured matmul peak, so the time goes "
                               f"to per-operation costs (Python, dispatch, "
                               + ("kernel launches" if c.device != "cpu" else "matrices too small to keep the cores busy")
                               + "), not arithmetic"),
        }[_bound(c)]
        out.append(f"{c.key}: {c.share(dom):.0%} of each step is {PHASE_WORDS[dom]}; "
                   f"{c.step_median_s * 1e3:.2f} ms per step, {c.samples_per_s:,.0f} samples/s; {why}.")
    models = list(dict.fromkeys(c.model for c in result.cells))
    devices = list(dict.fromkeys(c.device for c in result.cells))
    for m in models:
        for d in devices:
            ref, res = result.cell("reference", d, m), result.cell("resident", d, m)
            if ref and res:
                out.append(f"{m} on {d}: the resident pipeline is {ref.step_median_s / res.step_median_s:.1f}x "
                           f"faster than the notebook's (data loading falls from {ref.phases_s['data'] * 1e3:.2f} "
                           f"to {res.phases_s['data'] * 1e3:.3f} ms per step).")
    for m in models:
        for p in PIPELINES:
            cpu = result.cell(p, "cpu", m)
            for d in devices:
                acc = result.cell(p, d, m)
                if d == "cpu" or not cpu or not acc:
                    continue
                speed = cpu.step_median_s / acc.step_median_s
                word = "faster" if speed >= 1 else "slower"
                factor = speed if speed >= 1 else 1 / speed
                flops = acc.train_step_flops / 1e6
                reason = {
                    "input-bound": f"both wait on the input: on {d} {acc.share('data', 'h2d'):.0%} of the step is "
                                   f"data and copy, which the {d} cannot speed up",
                    "compute-bound": f"the {d} step is arithmetic ({acc.utilisation:.0%} of its peak), and the {d} "
                                     f"has {result.peaks[d] / result.peaks['cpu']:.0f}x the CPU's measured peak",
                    "overhead-bound": f"a step is only {flops:,.1f} MFLOP, which the {d} could do in "
                                      f"{acc.train_step_flops / result.peaks[d] * 1e6:.1f} us at its measured peak, "
                                      f"yet the step takes {acc.step_median_s * 1e6:,.0f} us: the fixed cost of "
                                      f"launching each operation dominates",
                }[_bound(acc)]
                out.append(f"{p}/{m}: {d} is {factor:.1f}x {word} than the CPU; {reason}.")
    return out


def format_table(result: BenchResult) -> str:
    head = (f"{'cell':<24} {'epoch s min':>11} {'median':>8} {'ms/step':>9} {'samples/s':>11} "
            + " ".join(f"{p:>9}" for p in PHASES) + f" {'GFLOP/s':>9} {'util':>6}")
    lines = [head, "-" * len(head)]
    for c in result.cells:
        shares = " ".join(f"{c.share(p):>9.0%}" for p in PHASES)
        star = "*" if c.extrapolated else " "
        lines.append(f"{c.key:<24} {c.epoch_s_min:>10.2f}{star} {c.epoch_s_median:>7.2f}{star} "
                     f"{c.step_median_s * 1e3:>9.3f} {c.samples_per_s:>11,.0f} {shares} "
                     f"{c.achieved_flops_per_s / 1e9:>9.1f} {c.utilisation:>6.1%}")
    if any(c.extrapolated for c in result.cells):
        n = result.cells[0].steps_timed
        lines.append(f"* epoch time extrapolated from {n} timed steps to a full epoch "
                     f"({result.cells[0].steps_per_epoch} steps of {result.cells[0].batch_size})")
    lines.append("phase columns: share of the instrumented step (a synchronisation at each phase boundary); "
                 "epoch times: minimum and median of the free-running repeats; ms/step, samples/s: medians")
    return "\n".join(lines)


def target_checks(result: BenchResult) -> list[tuple[str, bool]]:
    """The project's speed floors, as ratios measured side by side in this run."""
    checks = []
    for d in dict.fromkeys(c.device for c in result.cells):
        ref, res = result.cell("reference", d, "mlp"), result.cell("resident", d, "mlp")
        if d == "cpu" and ref and res:
            r = ref.step_median_s / res.step_median_s
            checks.append((f"resident MLP epoch vs reference on cpu: {r:.1f}x faster (floor 10x)", r >= 10))
        ref, res = result.cell("reference", d, "cnn"), result.cell("resident", d, "cnn")
        if ref and res:
            r = ref.step_median_s / res.step_median_s
            checks.append((f"resident CNN vs reference on {d}: {r:.2f}x (floor: never slower, >= 1)", r >= 1))
    for c in result.cells:
        if c.device == "cpu" and c.model == "cnn" and c.pipeline == "resident":
            checks.append((f"cnn on cpu is compute-bound: {c.utilisation:.0%} of the measured matmul peak "
                           f"(threshold {COMPUTE_BOUND_UTILISATION:.0%})", c.utilisation >= COMPUTE_BOUND_UTILISATION))
    return checks


def write_bench(result: BenchResult, out_dir) -> str:
    """bench.json and bench.txt into `out_dir`; returns the text (peaks, table, sentences, targets).
    The figure is the report layer's (`report.plots.plot_bench`)."""
    checks = target_checks(result)
    peaks = [f"{d}: {name}, measured float32 matmul peak {result.peaks[d] / 1e9:,.1f} GFLOP/s"
             for d, name in result.devices.items()]
    text = "\n".join([*peaks, format_table(result), "", *observations(result), "",
                      *(f"{'PASS' if ok else 'FAIL'}  {line}" for line, ok in checks)])
    write_json(out_dir / "bench.json", {**result.to_dict(), "targets": [{"check": c, "pass": ok} for c, ok in checks]})
    write_atomic(out_dir / "bench.txt", (text + "\n").encode())
    return text

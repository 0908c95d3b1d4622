"""The device x pipeline x model benchmark: epoch time, samples/s, and where each step's time goes.

Every cell is prepared first (model, optimizer, batch stream), then warmed up; its warm-up steps
are timed and reported apart from the steady state. The `repeats` free-running timings of `steps`
steps are interleaved across cells (A B A B ...), so that a drift in the machine's load hits every
cell alike, and every time is a median with its min-max over the repeats. A cell whose repeats
spread by more than UNSTABLE_SPREAD of their median, or a run during which the load average
exceeded the core count, says in words that it is unstable. Then one instrumented pass per cell
times each phase of a step (data, host-to-device copy, forward, backward, optimizer) with a
synchronisation at every phase boundary, on a GPU with CUDA events created once per pass; each
phase's share is of the sum of the phases, and what the outer timer saw beyond that sum is
reported as timer overhead. A short GEMM on each device gives its measured matmul peak, against
which the achieved FLOP/s of a cell is a utilisation.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.defaults import DEFAULT_BATCH_SIZE, PIPELINES
from mnistlab.core.device import device_name, resolve_device, synchronize
from mnistlab.core.environment import load_snapshot, machine_was_busy
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
UNSTABLE_SPREAD = 0.10  # (max - min) / median of a cell's repeats beyond which its figure is not trusted


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and quartiles of repeated measurements, and the range relative to the median."""
    med = statistics.median(values)
    q1, q3 = (statistics.quantiles(values, n=4, method="inclusive")[::2] if len(values) > 1 else (med, med))
    return {"median": med, "min": min(values), "max": max(values), "q1": q1, "q3": q3,
            "rel_range": (max(values) - min(values)) / med if med > 0 else 0.0, "n": len(values)}


def ratio_words(ratios: Sequence[float]) -> str:
    """Per-repeat ratios slow/fast as words with their range: "12.0x faster (9.1-14.2x over 5 repeats)";
    a ratio below 1 is said the other way round ("1.4x slower"), never "0.7x faster"."""
    med, lo, hi, n = statistics.median(ratios), min(ratios), max(ratios), len(ratios)
    over = f"over {n} repeats" if n > 1 else "1 repeat, no range"
    if lo >= 1:
        return f"{med:.1f}x faster ({lo:.1f}\u2013{hi:.1f}x {over})" if n > 1 else f"{med:.1f}x faster ({over})"
    if hi <= 1:
        return (f"{1 / med:.1f}x slower ({1 / hi:.1f}\u2013{1 / lo:.1f}x {over})" if n > 1
                else f"{1 / med:.1f}x slower ({over})")
    return f"not clearly different: from {1 / lo:.2f}x slower to {hi:.2f}x faster {over}"


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
    step_s: list[float]  # per-step time of each free-running repeat, in the interleaved order
    warmup_s: list[float]  # time of each warm-up step (the first one is cold)
    phases_s: dict[str, float]  # mean per step, instrumented pass
    instrumented_step_s: float  # mean per step of the instrumented pass, outer timer
    train_step_flops: int  # for one batch
    peak_flops_per_s: float
    machine_busy: str | None = None  # words from the run's load check, set by run_bench

    @property
    def key(self) -> str:
        return f"{self.pipeline}/{self.device}/{self.model}"

    @property
    def step_spread(self) -> dict[str, float]:
        return spread(self.step_s)

    @property
    def step_median_s(self) -> float:
        return statistics.median(self.step_s)

    @property
    def epoch_s_min(self) -> float:
        return min(self.step_s) * self.steps_per_epoch

    @property
    def epoch_s_max(self) -> float:
        return max(self.step_s) * self.steps_per_epoch

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

    @property
    def phase_total_s(self) -> float:
        return sum(self.phases_s.values())

    @property
    def timer_overhead_s(self) -> float:
        """What the outer timer of the instrumented pass saw beyond the phases: synchronisations, timers."""
        return max(0.0, self.instrumented_step_s - self.phase_total_s)

    def share(self, *phases: str) -> float:
        """Share of the phases' sum (so the five shares add up to 100%)."""
        total = self.phase_total_s
        return sum(self.phases_s[p] for p in phases) / total if total > 0 else 0.0

    def dominant_phase(self) -> str:
        return max(PHASES, key=lambda p: self.phases_s[p])

    @property
    def stability(self) -> str | None:
        """None when the figure can be trusted; otherwise why not, in words."""
        rel = self.step_spread["rel_range"]
        if len(self.step_s) > 1 and rel > UNSTABLE_SPREAD:
            return (f"unstable: its {len(self.step_s)} repeats spread over {rel:.0%} of their median (more than "
                    f"{UNSTABLE_SPREAD:.0%}); another process probably used the CPU during this measurement; rerun")
        return self.machine_busy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key, "step_median_s": self.step_median_s,
                "step_spread": self.step_spread, "epoch_s_min": self.epoch_s_min,
                "epoch_s_max": self.epoch_s_max, "epoch_s_median": self.epoch_s_median,
                "samples_per_s": self.samples_per_s, "achieved_flops_per_s": self.achieved_flops_per_s,
                "utilisation": self.utilisation, "shares": {p: self.share(p) for p in PHASES},
                "timer_overhead_s": self.timer_overhead_s, "stability": self.stability}


def measure_matmul_peak(device: torch.device, seconds: float = 0.5, dtype: torch.dtype = torch.float32) -> float:
    """Best FLOP/s of a square matmul in `dtype` on `device`, with torch's current precision settings
    (bf16 and fp16: the mixed-precision ceiling)."""
    n = 1024 if device.type == "cpu" else 4096
    reps = 5 if device.type == "cpu" else 20
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


class _PhaseClock:
    """Times phases of a step: perf_counter after a synchronisation; on a GPU, CUDA events that are
    created once per pass and reused at every step (creating them per phase costs time of its own)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.total = dict.fromkeys(PHASES, 0.0)
        self.events = ({p: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                        for p in PHASES} if self.cuda else {})

    def run(self, phase: str, fn: Callable[[], Any]) -> Any:
        synchronize(self.device)
        if self.cuda and phase != "data":  # data is host work: the wall clock is the right one
            start, end = self.events[phase]
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


def time_steps(step: Callable[[], None], n: int, device: torch.device) -> float:
    """Seconds per step of `n` free-running calls of `step`, synchronised at both ends only. This is
    the one place a cell is timed: a new variant of a cell (another implementation) is a new step."""
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    synchronize(device)
    return (time.perf_counter() - t0) / n


@dataclass
class _Setup:
    """A cell ready to time: its step function, its instrumented step, and what it measured so far."""
    model: str
    device: torch.device
    pipeline: str
    implementation: str
    steps_per_epoch: int
    n: int
    step: Callable[[], None]
    phased_step: Callable[[_PhaseClock], None]
    num_classes: int = 10
    warmup_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)


def prepare_cell(model_name: str, device: torch.device, pipeline: str, split: RawSplit, spec: DatasetSpec, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, steps: int | None = 100, seed: int = 0) -> _Setup:
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

    def phased_step(clock: _PhaseClock) -> None:
        x, y = clock.run("data", lambda: next(it))
        x, y = clock.run("h2d", lambda: (x.to(device), y.to(device)))
        loss = clock.run("forward", lambda: F.cross_entropy(model(x), y))
        clock.run("backward", loss.backward)
        clock.run("optimizer", lambda: (opt.step(), opt.zero_grad(set_to_none=True)))

    return _Setup(model_name, device, pipeline, impl, steps_per_epoch, n, step, phased_step, len(spec.classes))


def _instrumented(setup: _Setup) -> tuple[dict[str, float], float]:
    """Mean seconds per step of each phase, and of the whole instrumented step (outer timer)."""
    clock = _PhaseClock(setup.device)
    outer = 0.0
    for _ in range(setup.n):
        synchronize(setup.device)
        t0 = time.perf_counter()
        setup.phased_step(clock)
        synchronize(setup.device)
        outer += time.perf_counter() - t0
    return {p: v / setup.n for p, v in clock.total.items()}, outer / setup.n


def run_cells(setups: Sequence[_Setup], *, repeats: int, warmup: int) -> None:
    """Warm every cell up (each warm-up step timed alone), then time the repeats interleaved:
    repeat 1 of every cell, then repeat 2 of every cell, ..."""
    for s in setups:
        for _ in range(warmup):
            s.warmup_s.append(time_steps(s.step, 1, s.device))
    for _ in range(repeats):
        for s in setups:
            s.step_s.append(time_steps(s.step, s.n, s.device))


def bench_cell(model_name: str, device: torch.device, pipeline: str, split: RawSplit, spec: DatasetSpec, *,
               batch_size: int = DEFAULT_BATCH_SIZE, steps: int | None = 100, repeats: int = 3, warmup: int = 10,
               peak: float, seed: int = 0) -> Cell:
    """One cell on its own (no interleaving partner)."""
    setup = prepare_cell(model_name, device, pipeline, split, spec, batch_size=batch_size, steps=steps, seed=seed)
    run_cells([setup], repeats=repeats, warmup=warmup)
    return _finish(setup, batch_size, repeats, peak)


def _finish(s: _Setup, batch_size: int, repeats: int, peak: float) -> Cell:
    phases, outer = _instrumented(s)
    return Cell(model=s.model, device=s.device.type, pipeline=s.pipeline, implementation=s.implementation,
                batch_size=batch_size, steps_timed=s.n, repeats=repeats, steps_per_epoch=s.steps_per_epoch,
                extrapolated=s.n < s.steps_per_epoch, step_s=s.step_s, warmup_s=s.warmup_s, phases_s=phases,
                instrumented_step_s=outer, train_step_flops=profile_model(s.model, batch_size, s.num_classes).train_step_flops,
                peak_flops_per_s=peak)


@dataclass
class BenchResult:
    cells: list[Cell]
    peaks: dict[str, float]
    devices: dict[str, str]  # device type -> name
    settings: dict[str, Any]
    load: dict[str, Any] = field(default_factory=dict)  # {"start": load_snapshot(), "end": ...}

    def cell(self, pipeline: str, device: str, model: str) -> Cell | None:
        return next((c for c in self.cells if (c.pipeline, c.device, c.model) == (pipeline, device, model)), None)

    @property
    def machine_busy(self) -> str | None:
        return machine_was_busy(self.load.get("start"), self.load.get("end"))

    def warnings(self) -> list[str]:
        """Every reason, in words, not to trust a figure of this run."""
        out = [self.machine_busy] if self.machine_busy else []
        out += [f"{c.key}: {c.stability}" for c in self.cells if c.stability and c.stability != self.machine_busy]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "devices": self.devices, "peaks_flops_per_s": self.peaks,
                "load": self.load, "warnings": self.warnings(), "speedups": speedups(self),
                "cells": [c.to_dict() for c in self.cells], "observations": observations(self)}


def run_bench(split: RawSplit, spec: DatasetSpec, *, models: list[str], devices: list[str], pipelines: list[str],
              batch_size: int = DEFAULT_BATCH_SIZE, steps: int | None = 100, repeats: int = 3, warmup: int = 10,
              log: Callable[[str], None] = print) -> BenchResult:
    load_start = load_snapshot()
    devs = [resolve_device(d) for d in devices]
    peaks, names, setups = {}, {}, []
    for dev in devs:
        peaks[dev.type] = measure_matmul_peak(dev)
        names[dev.type] = device_name(dev)
        log(f"{dev.type}: {names[dev.type]}, measured float32 matmul peak {peaks[dev.type] / 1e9:,.1f} GFLOP/s")
        for model, pipeline in itertools.product(models, pipelines):
            setups.append(prepare_cell(model, dev, pipeline, split, spec, batch_size=batch_size, steps=steps))
    log(f"timing {len(setups)} cells: {warmup} warm-up steps each, then {repeats} interleaved repeats of "
        f"{setups[0].n if setups else 0} steps")
    run_cells(setups, repeats=repeats, warmup=warmup)
    log("instrumented pass (a synchronisation at each phase boundary) ...")
    cells = [_finish(s, batch_size, repeats, peaks[s.device.type]) for s in setups]
    load = {"start": load_start, "end": load_snapshot()}
    busy = machine_was_busy(load["start"], load["end"])
    for c in cells:
        c.machine_busy = busy
    settings = {"batch_size": batch_size, "steps": steps, "repeats": repeats, "warmup": warmup,
                "samples": len(split), "dataset": spec.name, "torch": torch.__version__,
                "interleaved": True, "unstable_spread": UNSTABLE_SPREAD}
    return BenchResult(cells, peaks, names, settings, load)


def _bound(c: Cell) -> str:
    if c.share("data", "h2d") >= INPUT_BOUND_SHARE:
        return "input-bound"
    if c.utilisation >= COMPUTE_BOUND_UTILISATION:
        return "compute-bound"
    return "overhead-bound"


def pair_ratios(slow: Cell, fast: Cell) -> list[float]:
    """Per-repeat time ratios slow/fast: repeat i of both cells ran next to each other (interleaved)."""
    return [a / b for a, b in zip(slow.step_s, fast.step_s, strict=False)]


def speedups(result: BenchResult) -> list[dict[str, Any]]:
    """Resident vs the notebook's pipeline on each device and model, and each accelerator vs the CPU
    on each pipeline and model: per-repeat ratios, their spread, and the words."""
    out = []
    models = list(dict.fromkeys(c.model for c in result.cells))
    devices = list(dict.fromkeys(c.device for c in result.cells))
    for m, d in itertools.product(models, devices):
        ref, res = result.cell("reference", d, m), result.cell("resident", d, m)
        if ref and res:
            r = pair_ratios(ref, res)
            out.append({"what": f"{m} on {d}: resident vs the notebook's pipeline", "subject": res.key,
                        "baseline": ref.key, "ratios": r, "spread": spread(r), "words": ratio_words(r)})
    for m, p, d in itertools.product(models, PIPELINES, devices):
        cpu, acc = result.cell(p, "cpu", m), result.cell(p, d, m)
        if d != "cpu" and cpu and acc:
            r = pair_ratios(cpu, acc)
            out.append({"what": f"{p}/{m}: {d} vs the CPU", "subject": acc.key, "baseline": cpu.key,
                        "ratios": r, "spread": spread(r), "words": ratio_words(r)})
    return out


def observations(result: BenchResult) -> list[str]:
    """Sentences computed from this run's numbers: what dominates each cell, and why speed-ups are what they are."""
    out = list(result.warnings())
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
        sp = c.step_spread
        out.append(f"{c.key}: {c.share(dom):.0%} of each step is {PHASE_WORDS[dom]}; "
                   f"{c.step_median_s * 1e3:.2f} ms per step ({sp['min'] * 1e3:.2f}\u2013{sp['max'] * 1e3:.2f} over "
                   f"{len(c.step_s)} repeats), {c.samples_per_s:,.0f} samples/s; {why}.")
    models = list(dict.fromkeys(c.model for c in result.cells))
    devices = list(dict.fromkeys(c.device for c in result.cells))
    for m in models:
        for d in devices:
            ref, res = result.cell("reference", d, m), result.cell("resident", d, m)
            if ref and res:
                out.append(f"{m} on {d}, the resident pipeline against the notebook's: "
                           f"{ratio_words(pair_ratios(ref, res))} (data loading falls from "
                           f"{ref.phases_s['data'] * 1e3:.2f} to {res.phases_s['data'] * 1e3:.3f} ms per step).")
    for m in models:
        for p in PIPELINES:
            cpu = result.cell(p, "cpu", m)
            for d in devices:
                acc = result.cell(p, d, m)
                if d == "cpu" or not cpu or not acc:
                    continue
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
                out.append(f"{p}/{m}: {d} vs the CPU per step on equal work: {ratio_words(pair_ratios(cpu, acc))}; "
                           f"{reason}.")
    return out


def format_table(result: BenchResult) -> str:
    head = (f"{'cell':<24} {'epoch s median (min-max)':>25} {'ms/step':>9} {'spread':>7} {'samples/s':>10} "
            f"{'1st step ms':>11} " + " ".join(f"{p:>9}" for p in PHASES) + f" {'timer ovh':>9} {'GFLOP/s':>8} "
            f"{'util':>6}  stability")
    lines = [head, "-" * len(head)]
    for c in result.cells:
        shares = " ".join(f"{c.share(p):>9.0%}" for p in PHASES)
        star = "*" if c.extrapolated else " "
        epoch = f"{c.epoch_s_median:.2f} ({c.epoch_s_min:.2f}-{c.epoch_s_max:.2f}){star}"
        first = f"{c.warmup_s[0] * 1e3:.2f}" if c.warmup_s else "-"
        ovh = c.timer_overhead_s / c.instrumented_step_s if c.instrumented_step_s > 0 else 0.0
        lines.append(f"{c.key:<24} {epoch:>25} {c.step_median_s * 1e3:>9.3f} {c.step_spread['rel_range']:>7.0%} "
                     f"{c.samples_per_s:>10,.0f} {first:>11} {shares} {ovh:>9.0%} "
                     f"{c.achieved_flops_per_s / 1e9:>8.1f} {c.utilisation:>6.1%}  "
                     f"{'unstable' if c.stability else 'stable'}")
    if any(c.extrapolated for c in result.cells):
        n = result.cells[0].steps_timed
        lines.append(f"* epoch time extrapolated from {n} timed steps to a full epoch "
                     f"({result.cells[0].steps_per_epoch} steps of {result.cells[0].batch_size})")
    s = result.settings
    lines.append(f"epoch s, ms/step, samples/s: steady state after {s.get('warmup', 0)} warm-up steps, median "
                 f"(min-max) of {s.get('repeats')} repeats interleaved across cells; spread: (max-min)/median, "
                 f"above {UNSTABLE_SPREAD:.0%} is unstable; 1st step: the first (cold) warm-up step; phase "
                 f"columns: share of the sum of the phases in a separate instrumented pass (a synchronisation "
                 f"at each phase boundary); timer ovh: what that pass's outer timer saw beyond the phases, "
                 f"as a share of its step")
    return "\n".join(lines)


def _load_line(result: BenchResult) -> str:
    parts = [f"{w} {s['load_avg_1m']:.2f}" for w, s in result.load.items() if s and s.get("load_avg_1m") is not None]
    cores = next((s["cpu_count"] for s in result.load.values() if s), None)
    return (f"load average (1 min): {', '.join(parts)}; {cores} logical cores" if parts
            else "load average: not available on this OS")


def write_bench(result: BenchResult, out_dir) -> str:
    """bench.json and bench.txt into `out_dir`; returns the text (peaks, load, table, sentences).
    The figure is the report layer's (`report.plots.plot_bench`). No pass/fail floors here: those
    are the project's own checks (benchmarks/bench_targets.py)."""
    peaks = [f"{d}: {name}, measured float32 matmul peak {result.peaks[d] / 1e9:,.1f} GFLOP/s"
             for d, name in result.devices.items()]
    speed = [f"{s['what']}: {s['words']}" for s in speedups(result)]
    text = "\n".join([*peaks, _load_line(result), format_table(result), "", *speed, "", *observations(result)])
    write_json(out_dir / "bench.json", result.to_dict())
    write_atomic(out_dir / "bench.txt", (text + "\n").encode())
    return text

"""The device x pipeline x model benchmark: epoch time, samples/s, and where each step's time goes.

Every cell is prepared first (model, optimizer, batch stream; the step is training.levers.make_step's,
eager fp32), then warmed up; its warm-up steps are timed and reported apart from the steady state.
The `repeats` free-running timings of `steps` steps are interleaved across cells (core/timing.py),
and every time is a Spread with the one stability rule. Then one instrumented pass per cell times
each phase of a step (data, host-to-device copy, forward, backward, optimizer) with a
synchronisation at every phase boundary, on a GPU with CUDA events created once per pass; each
phase's share is of the sum of the phases, and what the outer timer saw beyond that sum is
reported as timer overhead. Each device's ceilings are measured (measure/ceilings.py: the best of
several matmul shapes and a convolution, the memory bandwidth, the cost of one operation), and each
model's training step is counted (FLOPs, bytes, operations): a cell's utilisation is of the compute
ceiling (never above 100%: a step faster than every probe raises it). What binds each model's step is
measured (measure/decomposition.py: the step timed at batches 1-256 and the cell's, split into a fixed part and a
per-sample part) and stored in bench.json; a cell's `bound` reads it (`bound`): its input where getting the batch
in takes half the step, else the decomposition's judgement; a file from before the decompositions falls back on
the step's floors.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, cast

import torch

from mnistlab.core import progress
from mnistlab.core.defaults import DEFAULT_BATCH_SIZE, PIPELINES
from mnistlab.core.device import device_name, resolve_device, synchronize
from mnistlab.core.environment import load_snapshot
from mnistlab.core.failures import blame_model
from mnistlab.core.logs import lines
from mnistlab.core.richdisplay import html_table
from mnistlab.core.schema import check
from mnistlab.core.threads import current as current_threads
from mnistlab.core.timing import (
    LOAD_SCHEMA,
    UNSTABLE_SPREAD,
    Load,
    Ratio,
    Timer,
    interleave,
    machine_stability,
    time_steps,
)
from mnistlab.core.words import percent
from mnistlab.data.datasets import DatasetSpec, DataShape
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.data.notebook_pipeline import reference_loader
from mnistlab.measure.ceilings import (
    Ceilings,
    Floors,
    StepCost,
    Theoretical,
    count_step,
    measure_ceilings,
    working_set_bandwidths,
)
from mnistlab.measure.decomposition import (
    ARITHMETIC,
    BENCH_DECOMPOSE,
    BINDS,
    FIXED,
    MEMORY,
    DecomposeSettings,
    Decomposition,
    find_decomposition,
    measure_decomposition,
)
from mnistlab.measure.decomposition import bound_label as _binds_label
from mnistlab.measure.stepcell import STEP_CELL_SCHEMA, TIMED_STEPS, StepCell
from mnistlab.measure.table import text_table
from mnistlab.training.levers import Levers, make_step
from mnistlab.training.loop import make_optimizer
from mnistlab.training.models import create_model

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

PHASES = ("data", "h2d", "forward", "backward", "optimizer")
PHASE_WORDS = {
    "data": "data loading (fetch and collate)",
    "h2d": "the host-to-device copy",
    "forward": "the forward pass",
    "backward": "the backward pass",
    "optimizer": "the optimizer step",
}
COMPUTE_BOUND_UTILISATION = 0.30  # only for a bench.json from before the floors were counted
INPUT_BOUND_SHARE = 0.50  # of the step spent in data + h2d
INPUT = "input"
# the floors' names (measure/ceilings.Floors) in the judgement's words: a file from before the decompositions
FLOOR_BINDS = {"compute": ARITHMETIC, "memory": MEMORY, "overhead": FIXED}


def floors_binds(floors_bound: str) -> str:
    """Floors.bound ('compute', 'between compute and overhead') in the judgement's words ('arithmetic',
    'between fixed per-step cost and arithmetic'), so that one vocabulary labels every cell."""
    if floors_bound.startswith("between "):
        two = sorted((FLOOR_BINDS[w] for w in floors_bound.removeprefix("between ").split(" and ")), key=BINDS.index)
        return f"between {two[0]} and {two[1]}"
    return FLOOR_BINDS[floors_bound]


def bound(
    utilisation: float,
    input_share: float = 0.0,
    floors: Floors | None = None,
    decomposition: Decomposition | None = None,
) -> str:
    """THE judgement of what limits a step: 'input' (half of it or more is getting the batch in), else what
    the step's measured decomposition says (measure/decomposition.judge: 'fixed per-step cost', 'arithmetic',
    'memory', or 'between' two). A file from before the decompositions falls back on the step's floors
    (`floors_binds`), and one from before the floors on a fixed threshold of the measured peak. Every
    sentence about a bound reads this value."""
    if input_share >= INPUT_BOUND_SHARE:
        return INPUT
    if decomposition is not None:
        return decomposition.binds
    if floors is not None:
        return floors_binds(floors.bound)
    return ARITHMETIC if utilisation >= COMPUTE_BOUND_UTILISATION else FIXED


def bound_label(b: str) -> str:
    """'bound by its input', 'bound by its fixed per-step cost', 'bound by arithmetic', or the 'between ...'
    label as it is (no single bound claimed)."""
    return "bound by its input" if b == INPUT else _binds_label(b)


# a cell's measurements (its judgements are recomputed on reading); older files lack the step's bytes and
# operations and the device's bandwidth and per-operation cost
CELL_SCHEMA = {
    **STEP_CELL_SCHEMA,
    "pipeline": "text",
    "pipeline_detail": "text",
    "repeats": "positive count",
    "steps_per_epoch": "positive count",
    "extrapolated": "bool",
    "step_s": TIMED_STEPS,
    "warmup_s": ["positive seconds"],
    "phases_s": {p: "seconds" for p in PHASES},
    "instrumented_step_s": "seconds",
    "peak_flops_per_s": "flop rate",
    "train_step_conv_flops?": "count?",
}
BENCH_SCHEMA = {
    "settings": {"batch_size": "positive count", "steps": "count?", "repeats": "positive count", "warmup": "count"},
    "devices": {"*": "text"},
    "peaks_flops_per_s": {"*": "flop rate"},
    "load?": LOAD_SCHEMA,
    "ceilings?": {"*": {"*": "any"}},
    "cells": [CELL_SCHEMA],
    "decompositions?": [{"*": "any"}],
}  # each checked by Decomposition.from_dict


@dataclass
class Cell(StepCell):
    model: str
    device: str
    pipeline: str
    pipeline_detail: str  # how the pipeline is implemented, in words
    batch_size: int
    steps_timed: int
    repeats: int
    steps_per_epoch: int
    extrapolated: bool
    step_s: list[float]  # per-step time of each free-running repeat, in the interleaved order
    warmup_s: list[float]  # time of each warm-up step (the first one pays the first-call costs)
    phases_s: dict[str, float]  # mean per step, instrumented pass
    instrumented_step_s: float  # mean per step of the instrumented pass, outer timer
    train_step_flops: int  # for one batch
    peak_flops_per_s: float  # the device's measured compute ceiling (measure/ceilings.py)
    train_step_bytes: int = 0  # what one step's operations read and write (0: not counted)
    train_step_ops: int = 0  # operations one step dispatches
    bandwidth_bytes_per_s: float = 0.0  # the device's measured memory bandwidth
    op_cost_s: float = 0.0  # the device's measured cost of one trivial operation
    load: Load = field(default_factory=dict, repr=False)  # the bench's load snapshots (not per cell in the file)
    train_step_conv_flops: int | None = None  # of train_step_flops, those in convolutions (None: not split)
    # the model's step measured at several batches on this device (BenchResult attaches it; None: not measured)
    decomposition: Decomposition | None = field(default=None, repr=False, compare=False)

    FIELDS: ClassVar[tuple[str, ...]] = tuple(k.rstrip("?") for k in CELL_SCHEMA)

    @property
    def key(self) -> str:
        return f"{self.pipeline}/{self.device}/{self.model}"

    @property
    def epoch_s_min(self) -> float:
        return self.step.min * self.steps_per_epoch

    @property
    def epoch_s_max(self) -> float:
        return self.step.max * self.steps_per_epoch

    @property
    def epoch_s_median(self) -> float:
        return self.step_median_s * self.steps_per_epoch

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / self.step_median_s

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
    def bound(self) -> str:
        return bound(self.utilisation, self.share("data", "h2d"), self.floors, self.decomposition)

    @property
    def judged_by(self) -> str:
        """What `bound` read: 'input', 'decomposition', 'floors' or 'threshold'."""
        if self.bound == INPUT:
            return "input"
        return "decomposition" if self.decomposition else "floors" if self.floors else "threshold"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in self.FIELDS},
            "key": self.key,
            "step_median_s": self.step_median_s,
            "step_spread": self.step.to_dict(),
            "epoch_s_min": self.epoch_s_min,
            "epoch_s_max": self.epoch_s_max,
            "epoch_s_median": self.epoch_s_median,
            "samples_per_s": self.samples_per_s,
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "utilisation": self.utilisation,
            "shares": {p: self.share(p) for p in PHASES},
            "timer_overhead_s": self.timer_overhead_s,
            "bound": self.bound,
            "judged_by": self.judged_by,
            "ceiling_raised": self.ceiling_raised,
            "floors": self.floors.to_dict() if self.floors else None,
            "stability": self.stability.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], load: Load) -> Cell:
        """From a dict already checked against CELL_SCHEMA; judgements are recomputed, never read back."""
        return cls(**{k: d[k] for k in cls.FIELDS if k in d}, load=load)


@dataclass(frozen=True)
class Comparison:
    """One speed-up of the bench: `subject` against `baseline`, from their paired repeats."""

    what: str
    subject: str  # a cell key
    baseline: str
    model: str
    ratio: Ratio

    def to_dict(self) -> dict[str, Any]:
        r = self.ratio.to_dict()
        return {"what": self.what, "subject": self.subject, "baseline": self.baseline, "model": self.model, **r}


class _PhaseClock:
    """Times phases of a step: perf_counter after a synchronisation; on a GPU, CUDA events that are
    created once per pass and reused at every step (creating them per phase costs time of its own)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.total = dict.fromkeys(PHASES, 0.0)
        self.events = (
            {p: (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for p in PHASES}
            if self.cuda
            else {}
        )

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
        with Timer(self.device) as t:
            out = fn()
        self.total[phase] += t.seconds
        return out


def _stream(
    pipeline: str, split: RawSplit, spec: DatasetSpec, batch_size: int, device: torch.device, seed: int
) -> tuple[Callable[[], Iterator], str]:
    """An endless batch iterator factory and a description of the pipeline."""
    if pipeline == "resident":
        loader = DeviceLoader(split, spec.mean, spec.std, batch_size, device, shuffle=True, seed=seed)
        return (
            lambda: itertools.chain.from_iterable(loader.batches(e) for e in itertools.count(1)),
            "device-resident tensors (mnistlab)",
        )
    ref = reference_loader(split, spec.mean, spec.std, batch_size, seed)
    return (
        lambda: itertools.chain.from_iterable(ref for _ in itertools.count()),
        f"per-sample PIL + DataLoader ({cast(Any, ref.dataset).implementation})",
    )  # the notebook's dataset


@dataclass
class _Setup:
    """A cell ready to time: its step function, its instrumented step, and what it measured so far."""

    model: str
    device: torch.device
    pipeline: str
    pipeline_detail: str
    steps_per_epoch: int
    n: int
    step: Callable[[], None]
    phased_step: Callable[[_PhaseClock], None]
    shape: DataShape
    warmup_s: list[float] = field(default_factory=list)
    step_s: list[float] = field(default_factory=list)


def prepare_cell(
    model_name: str,
    device: torch.device,
    pipeline: str,
    split: RawSplit,
    spec: DatasetSpec,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    steps: int | None = 100,
) -> _Setup:
    """The cell's step is training.levers.make_step's (eager fp32): what train_epoch runs, after the
    batch is copied to the device (the reference pipeline yields host tensors)."""
    steps_per_epoch = -(-len(split) // batch_size)
    n = steps_per_epoch if steps is None else min(steps, steps_per_epoch)
    torch.manual_seed(0)
    model = create_model(model_name, spec.shape).to(device)
    opt = make_optimizer(model, lr=0.01, momentum=0.5)
    train_step = make_step(model, opt, Levers(), device, batch_size=batch_size, sample_shape=spec.shape.sample)
    make_iter, detail = _stream(pipeline, split, spec, batch_size, device, seed=0)
    it = make_iter()

    def step() -> None:
        x, y = next(it)
        train_step(x.to(device), y.to(device))

    def phased_step(clock: _PhaseClock) -> None:  # the same work, cut at the phase boundaries
        x, y = clock.run("data", lambda: next(it))
        x, y = clock.run("h2d", lambda: (x.to(device), y.to(device)))
        loss = clock.run("forward", lambda: train_step.loss_fn(model(x), y))
        clock.run("backward", loss.backward)
        clock.run("optimizer", lambda: (opt.step(), opt.zero_grad(set_to_none=True)))

    return _Setup(model_name, device, pipeline, detail, steps_per_epoch, n, step, phased_step, spec.shape)


def _instrumented(setup: _Setup) -> tuple[dict[str, float], float]:
    """Mean seconds per step of each phase, and of the whole instrumented step (outer timer)."""
    clock = _PhaseClock(setup.device)
    outer = time_steps(lambda: setup.phased_step(clock), setup.n, setup.device)
    return {p: v / setup.n for p, v in clock.total.items()}, outer


def run_cells(setups: Sequence[_Setup], *, repeats: int, warmup: int) -> None:
    """Warm every cell up (each warm-up step timed alone), then time the repeats interleaved. The bar
    (core/progress.py) moves between timed blocks, never inside one: a cell's warm-up, then each repeat."""
    cells = progress.bar(len(setups) * (1 + repeats), "bench cells", "timing")

    def warm(s: _Setup) -> None:
        with blame_model(s.model, "while being timed"):
            s.warmup_s.extend(time_steps(s.step, 1, s.device) for _ in range(warmup))
        cells.update()

    def time_once(s: _Setup) -> float:
        with blame_model(s.model, "while being timed"):
            t = time_steps(s.step, s.n, s.device)
        cells.update()
        return t

    with cells:
        times = interleave(setups, warm_up=warm, time_once=time_once, repeats=repeats)
    for s, t in zip(setups, times, strict=True):
        s.step_s.extend(t)


def _finish(s: _Setup, batch_size: int, repeats: int, ceilings: Ceilings, cost: StepCost) -> Cell:
    with blame_model(s.model, "in the instrumented pass"):
        phases, outer = _instrumented(s)
    return Cell(
        model=s.model,
        device=s.device.type,
        pipeline=s.pipeline,
        pipeline_detail=s.pipeline_detail,
        batch_size=batch_size,
        steps_timed=s.n,
        repeats=repeats,
        steps_per_epoch=s.steps_per_epoch,
        extrapolated=s.n < s.steps_per_epoch,
        step_s=s.step_s,
        warmup_s=s.warmup_s,
        phases_s=phases,
        instrumented_step_s=outer,
        train_step_flops=cost.flops,
        peak_flops_per_s=ceilings.compute_flops_per_s,
        train_step_bytes=cost.bytes,
        train_step_ops=cost.ops,
        bandwidth_bytes_per_s=ceilings.bandwidth_bytes_per_s,
        op_cost_s=ceilings.op_cost_s,
        train_step_conv_flops=cost.conv_flops,
    )


@dataclass
class BenchResult:
    FILE: ClassVar[str] = "bench.json"

    cells: list[Cell]
    peaks: dict[str, float]
    devices: dict[str, str]  # device type -> name
    settings: dict[str, Any]
    load: dict[str, Any] = field(default_factory=dict)  # {"start": load_snapshot(), "end": ...}
    ceilings: dict[str, dict[str, Any]] = field(default_factory=dict)  # device -> Ceilings.to_dict()
    decompositions: list[Decomposition] = field(default_factory=list)  # each model's step on each device

    def __post_init__(self) -> None:
        for c in self.cells:  # each cell reads the decomposition of its model's step, at its batch, on its device
            c.decomposition = self.decomposition(c.device, c.model, c.batch_size)

    def decomposition(self, device: str, model: str, batch_size: int) -> Decomposition | None:
        return find_decomposition(self.decompositions, device, model, batch_size)

    def achieved(self, device: str) -> float:
        """The fastest FLOP/s any cell reached on `device` (0: none)."""
        return max((c.achieved_flops_per_s for c in self.cells if c.device == device), default=0.0)

    def cell(self, pipeline: str, device: str, model: str) -> Cell | None:
        return next((c for c in self.cells if (c.pipeline, c.device, c.model) == (pipeline, device, model)), None)

    @property
    def machine_busy(self) -> str | None:
        return machine_stability(self.load).reason

    def warnings(self) -> list[str]:
        """Every reason, in words, not to trust a figure of this run."""
        out = [self.machine_busy] if self.machine_busy else []
        out += [
            f"{c.key}: {c.stability.reason}"
            for c in self.cells
            if not c.stability.stable and c.stability.reason != self.machine_busy
        ]
        return out

    def speedups(self) -> list[Comparison]:
        """Resident vs the notebook's pipeline on each device and model, and each accelerator vs the
        CPU on each pipeline and model: ratios of the paired, interleaved repeats."""
        out = []
        models = list(dict.fromkeys(c.model for c in self.cells))
        devices = list(dict.fromkeys(c.device for c in self.cells))
        for m, d in itertools.product(models, devices):
            ref, res = self.cell("reference", d, m), self.cell("resident", d, m)
            if ref and res:
                out.append(
                    Comparison(
                        f"{m} on {d}: resident vs the notebook's pipeline",
                        res.key,
                        ref.key,
                        m,
                        Ratio.paired(ref.step_s, res.step_s, self.load),
                    )
                )
        for m, p, d in itertools.product(models, PIPELINES, devices):
            cpu, acc = self.cell(p, "cpu", m), self.cell(p, d, m)
            if d != "cpu" and cpu and acc:
                out.append(
                    Comparison(
                        f"{p}/{m}: {d} vs the CPU", acc.key, cpu.key, m, Ratio.paired(cpu.step_s, acc.step_s, self.load)
                    )
                )
        return out

    def _repr_html_(self) -> str:
        rows = [
            (
                c.key,
                f"{c.step.median * 1e3:.3f} ({c.step.min * 1e3:.3f}–{c.step.max * 1e3:.3f})",
                f"{c.samples_per_s:,.0f}",
                f"{c.achieved_flops_per_s / 1e9:.1f}",
                f"{c.utilisation:.1%}",
                c.bound,
                "stable" if c.stability.stable else "unstable",
            )
            for c in self.cells
        ]
        table = html_table(
            "bench: one training step per cell",
            rows,
            headers=(
                "cell",
                "ms/step median (min–max)",
                "samples/s",
                "GFLOP/s",
                "of measured peak",
                "bound by",
                "stability",
            ),
        )
        speedups = [(u.what, u.ratio.marked()) for u in self.speedups()]
        return table + (html_table("speed-ups", speedups) if speedups else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "devices": self.devices,
            "peaks_flops_per_s": self.peaks,
            "ceilings": self.ceilings,
            "load": self.load,
            "warnings": self.warnings(),
            "speedups": [u.to_dict() for u in self.speedups()],
            "cells": [c.to_dict() for c in self.cells],
            "decompositions": [d.to_dict() for d in self.decompositions],
            "observations": observations(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> BenchResult:
        """A validated bench.json: a damaged, hostile or older file is one CheckpointError line naming
        the file and the field. Judgements (bound, stability, speed-ups) are recomputed from the
        measurements, so that they cannot disagree with them."""
        check(data, BENCH_SCHEMA, where)
        load = data.get("load") or {}
        decompositions = [
            Decomposition.from_dict(d, f"{where}: decompositions[{i}]")
            for i, d in enumerate(data.get("decompositions") or [])
        ]
        return cls(
            [Cell.from_dict(c, load) for c in data["cells"]],
            dict(data["peaks_flops_per_s"]),
            dict(data["devices"]),
            dict(data["settings"]),
            dict(load),
            dict(data.get("ceilings") or {}),
            decompositions,
        )


def decompose(
    models: Sequence[str],
    devices: Sequence[torch.device],
    shape: DataShape,
    batch_size: int,
    ceilings: dict[str, Ceilings],
    costs: dict[str, StepCost],
    settings: DecomposeSettings,
    log: Callable[[str], None] = _LOG,
) -> list[Decomposition]:
    """Each model's step decomposed on each device, at the cells' batch and thread count, reusing the bench's
    ceilings and counts (measure/decomposition.py); the working set's bandwidths are measured once per device."""
    out = []
    for dev in devices:
        c = ceilings[dev.type]
        bandwidths = working_set_bandwidths(dev, torch.get_num_threads(), c.bandwidth_bytes_per_s, c.op_cost_s)
        for m in models:
            with blame_model(m, "while its step was timed at several batch sizes"):
                out.append(
                    measure_decomposition(
                        m,
                        shape,
                        batch_size=batch_size,
                        settings=settings,
                        device=dev.type,
                        ceilings=c,
                        cost=costs[m],
                        bandwidths=bandwidths,
                        log=log,
                    )
                )
    return out


def run_bench(
    split: RawSplit,
    spec: DatasetSpec,
    *,
    models: list[str],
    devices: list[str],
    pipelines: list[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    steps: int | None = 100,
    repeats: int = 3,
    warmup: int = 10,
    decomposition: DecomposeSettings | None = BENCH_DECOMPOSE,
    log: Callable[[str], None] = _LOG,
) -> BenchResult:
    """The cells, timed interleaved; then, unless `decomposition` is None, each model's step decomposed on each
    device (`decompose`), which every cell's bound reads."""
    load_start = load_snapshot()
    devs = [resolve_device(d) for d in devices]
    peaks, names, setups, ceilings = {}, {}, [], {}
    costs = {}
    for m in models:  # per model: FLOPs, bytes, operations of one training step
        with blame_model(m, "while its training step was counted"):
            costs[m] = count_step(m, spec.shape, batch_size)
    for dev in devs:
        ceilings[dev.type] = measure_ceilings(dev)
        peaks[dev.type] = ceilings[dev.type].compute_flops_per_s
        names[dev.type] = device_name(dev)
        c = ceilings[dev.type]
        log(
            f"{dev.type}: {names[dev.type]}, measured float32 ceiling {c.compute_flops_per_s / 1e9:,.1f} GFLOP/s "
            f"({c.best_shape}), bandwidth {c.bandwidth_bytes_per_s / 1e9:,.1f} GB/s, "
            f"{c.op_cost_s * 1e6:.1f} us per trivial operation"
        )
        for model, pipeline in itertools.product(models, pipelines):
            setups.append(prepare_cell(model, dev, pipeline, split, spec, batch_size=batch_size, steps=steps))
    log(
        f"timing {len(setups)} cells: {warmup} warm-up steps each, then {repeats} interleaved repeats of "
        f"{setups[0].n if setups else 0} steps"
    )
    run_cells(setups, repeats=repeats, warmup=warmup)
    log("instrumented pass (a synchronisation at each phase boundary) ...")
    cells = [_finish(s, batch_size, repeats, ceilings[s.device.type], costs[s.model]) for s in setups]
    load = {"start": load_start, "end": load_snapshot()}
    for cell in cells:
        cell.load = load
    decompositions = []
    if decomposition is not None:
        log(
            f"decomposing each model's step: batches {sorted({*decomposition.batches, batch_size})}, "
            f"{decomposition.repeats} interleaved repeats of about {decomposition.chunk_s:g} s each"
        )
        decompositions = decompose(models, devs, spec.shape, batch_size, ceilings, costs, decomposition, log)
    settings = {
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        "warmup": warmup,
        "samples": len(split),
        "dataset": spec.name,
        "torch": torch.__version__,
        "interleaved": True,
        "unstable_spread": UNSTABLE_SPREAD,
        "threads": current_threads().to_dict(),
        "decomposition": {**asdict(decomposition), "batches": list(decomposition.batches)} if decomposition else None,
    }
    return BenchResult(
        cells, peaks, names, settings, load, {d: c.to_dict() for d, c in ceilings.items()}, decompositions
    )


def bound_words(c: Cell) -> str:
    """Why a cell's step takes the time it does, from its `bound`: the decomposition behind it (its brief
    words), else the floors of a file from before the decompositions, else the threshold of an older one."""
    if c.bound == INPUT:
        return f"{bound_label(INPUT)}: {c.share('data', 'h2d'):.0%} of the step is spent getting the batch in"
    raised = "; it beat every probe of the device, so its ceiling is what it reached" if c.ceiling_raised else ""
    util = f"it runs at {percent(c.utilisation)} of the measured compute ceiling{raised}"
    if c.decomposition is not None:
        return f"{c.decomposition.brief()}; {util}"
    f = c.floors
    if f is None:  # a bench.json from before the floors: the threshold's judgement
        return f"{bound_label(c.bound)}: {util}"
    return (
        f"{bound_label(c.bound)}, judged from its floors (this bench.json has no measured decomposition): "
        f"{f.compute_s * 1e3:.3f} ms of arithmetic, {f.memory_s * 1e3:.3f} ms of memory traffic at DRAM "
        f"bandwidth, {f.overhead_s * 1e3:.3f} ms for its {c.train_step_ops} operations; {util}"
    )


def cell_sentence(c: Cell) -> str:
    """What dominates one cell, its time with its range, and its bound."""
    dom, sp = c.dominant_phase(), c.step
    return (
        f"{c.key}: {c.share(dom):.0%} of each step is {PHASE_WORDS[dom]}; {sp.median * 1e3:.2f} ms per step "
        f"({sp.min * 1e3:.2f}\u2013{sp.max * 1e3:.2f} over {sp.n} repeats), {c.samples_per_s:,.0f} samples/s; "
        f"{bound_words(c)}."
    )


def comparison_sentence(result: BenchResult, u: Comparison) -> str:
    """A speed-up with its range and stability, and the reason it is what it is."""
    subject = next(c for c in result.cells if c.key == u.subject)
    baseline = next(c for c in result.cells if c.key == u.baseline)
    if subject.pipeline != baseline.pipeline:
        # the phases' shares come from the separate instrumented pass; their milliseconds are those shares of
        # the steps the table shows, so that a reader's share x step gives the figure printed
        before, after = baseline.share("data"), subject.share("data")
        return (
            f"{u.model} on {subject.device}, the resident pipeline against the notebook's: {u.ratio.marked()} "
            f"(data loading falls from {before:.0%} of a {baseline.step_median_s * 1e3:.2f} ms step, "
            f"{before * baseline.step_median_s * 1e3:.2f} ms, to {after:.0%} of a "
            f"{subject.step_median_s * 1e3:.2f} ms step, {after * subject.step_median_s * 1e3:.3f} ms; the shares "
            "are from the separate instrumented pass)."
        )
    d = subject.device
    here, there = ((result.ceilings.get(x) or {}).get("bandwidth_bytes_per_s") for x in ("cpu", d))
    more_bandwidth = (
        f", and the {d}'s measured bandwidth is {there / here:.0f}x the CPU's"
        if isinstance(here, (int, float)) and isinstance(there, (int, float)) and here > 0
        else ""
    )
    share = f" ({percent(subject.decomposition.fixed_share)} of it)" if subject.decomposition else ""
    reason = {
        INPUT: f"both wait on the input: on {d} {subject.share('data', 'h2d'):.0%} of the step is data and copy, "
        f"which the {d} cannot speed up",
        ARITHMETIC: f"the {d} step is bound by arithmetic ({percent(subject.utilisation)} of its ceiling), and the {d} "
        f"has {result.peaks[d] / result.peaks['cpu']:.0f}x the CPU's measured ceiling",
        FIXED: f"a step is only {subject.train_step_flops / 1e6:,.1f} MFLOP, which the {d} could do in "
        f"{subject.train_step_flops / result.peaks[d] * 1e6:.1f} us at its measured ceiling, yet the step "
        f"takes {subject.step_median_s * 1e6:,.0f} us: its fixed per-step cost{share}, launching each of its "
        f"{subject.train_step_ops} operations, dominates, and more arithmetic does not shrink it",
        MEMORY: f"the {d} step is bound by memory traffic{more_bandwidth}",
    }.get(subject.bound, f"the {d} step is {bound_label(subject.bound)}")
    return f"{subject.pipeline}/{u.model}: {d} vs the CPU per step on equal work: {u.ratio.marked()}; {reason}."


def observations(result: BenchResult) -> list[str]:
    """Sentences computed from this run's numbers and judgements: warnings, each cell, each speed-up."""
    return [*result.warnings(), *(cell_sentence(c) for c in result.cells)] + [
        comparison_sentence(result, u) for u in result.speedups()
    ]


def format_table(result: BenchResult) -> str:
    rows = []
    for c in result.cells:
        ovh = c.timer_overhead_s / c.instrumented_step_s if c.instrumented_step_s > 0 else 0.0
        star = "*" if c.extrapolated else ""
        rows.append(
            [
                c.key,
                f"{c.epoch_s_median:.2f} ({c.epoch_s_min:.2f}-{c.epoch_s_max:.2f}){star}",
                f"{c.step_median_s * 1e3:.3f}",
                f"{c.step.rel_range:.0%}",
                f"{c.samples_per_s:,.0f}",
                f"{c.warmup_s[0] * 1e3:.2f}" if c.warmup_s else "-",
                *(f"{c.share(p):.0%}" for p in PHASES),
                f"{ovh:.0%}",
                f"{c.achieved_flops_per_s / 1e9:.1f}",
                f"{c.utilisation:.1%}",
                c.bound,
                "stable" if c.stability.stable else "unstable",
            ]
        )
    lines = [
        text_table(
            [
                "cell",
                "epoch s median (min-max)",
                "ms/step",
                "spread",
                "samples/s",
                "1st step ms",
                *PHASES,
                "timer ovh",
                "GFLOP/s",
                "util",
                "bound by",
                "stability",
            ],
            rows,
        )
    ]
    if any(c.extrapolated for c in result.cells):
        n = result.cells[0].steps_timed
        lines.append(
            f"* epoch time extrapolated from {n} timed steps to a full epoch "
            f"({result.cells[0].steps_per_epoch} steps of {result.cells[0].batch_size})"
        )
    s = result.settings
    lines.append(
        f"epoch s, ms/step, samples/s: steady state after {s.get('warmup', 0)} warm-up steps, median "
        f"(min-max) of {s.get('repeats')} repeats interleaved across cells; spread: (max-min)/median, "
        f"above {UNSTABLE_SPREAD:.0%} (or 1 repeat, or a busy machine) is unstable; 1st step: the first "
        f"warm-up step; phase columns: share of the sum of the phases in a separate instrumented pass (a "
        f"synchronisation at each phase boundary); timer ovh: what that pass's outer timer saw beyond the "
        f"phases, as a share of its step; util: of the measured compute ceiling (never above 100%); "
        f"bound by: input (data + copy >= {INPUT_BOUND_SHARE:.0%} of the step), else what the model's "
        f"decomposition measured (below)"
        + (
            ""
            if all(c.decomposition for c in result.cells)
            else "; a cell without one: the largest of its floors (FLOPs at the ceiling, bytes at DRAM "
            "bandwidth, operations at the cost of one), or 'between' two within 25%"
        )
    )
    return "\n".join(lines)


def _load_line(result: BenchResult) -> str:
    parts = [f"{w} {s['load_avg_1m']:.2f}" for w, s in result.load.items() if s and s.get("load_avg_1m") is not None]
    cores = next((s["cpu_count"] for s in result.load.values() if s), None)
    return (
        f"load average (1 min): {', '.join(parts)}; {cores} logical cores"
        if parts
        else "load average: not available on this OS"
    )


def ceilings_line(device: str, name: str, ceilings: dict[str, Any] | None, peak: float, achieved: float = 0.0) -> str:
    """A device's measured ceilings beside its theoretical one, in one line. The theoretical figure is checked
    (Theoretical.checked) against the faster of the measured ceiling and `achieved`, the fastest any step of the
    bench ran: never a theoretical figure below a measured one."""
    if not ceilings:
        return f"{device}: {name}, measured float32 compute ceiling {peak / 1e9:,.1f} GFLOP/s"
    theory = Theoretical.from_dict(ceilings.get("theoretical") or {}).checked(max(peak, achieved))
    span = theory.flops_per_s
    if span is None:
        theoretical = f"theoretical: {theory.derivation}"
    else:
        low = f"{span[0] / 1e9:,.0f}–" if span[0] != span[1] else ""
        theoretical = f"theoretical {low}{span[1] / 1e9:,.0f} GFLOP/s ({theory.derivation})"
    threads = ceilings.get("threads")
    on = f" on {threads} thread{'s' * (threads != 1)}" if isinstance(threads, int) and threads > 0 else ""
    return (
        f"{device}: {name}; measured float32 compute ceiling {peak / 1e9:,.1f} GFLOP/s{on} "
        f"({ceilings.get('best_shape')}), memory bandwidth {ceilings.get('bandwidth_bytes_per_s', 0) / 1e9:,.1f} "
        f"GB/s, {ceilings.get('op_cost_s', 0) * 1e6:.1f} us per trivial operation; {theoretical}"
    )


def bench_text(result: BenchResult) -> str:
    """bench.txt: ceilings, load, table, sentences (the job writes it beside bench.json). The figure is
    the report layer's (`report.plots.plot_bench`), drawn from bench.json alone. No pass/fail floors
    here: those are the project's own checks (benchmarks/bench_targets.py)."""
    peaks = [
        ceilings_line(d, name, result.ceilings.get(d), result.peaks[d], result.achieved(d))
        for d, name in result.devices.items()
    ]
    # each speed-up is said once, in its observation (the ratio, its range and why it is what it is)
    decomposed = (
        [
            "",
            "What binds each model's step, measured (step time against batch; measure/decomposition.py):",
            *(d.words() for d in result.decompositions),
        ]
        if result.decompositions
        else []
    )
    return "\n".join([*peaks, _load_line(result), format_table(result), "", *observations(result), *decomposed])

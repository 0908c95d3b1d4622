"""The implementation axis of `mnistlab bench --implementations ...`: what each speed lever buys.

For each device and model, every implementation (eager fp32, channels-last, bf16-mixed, ...,
compiled, CUDA-graphed) builds its training step with training.levers, on device-resident data
and the notebook's SGD. Each gets the one warm-up (training.levers.warm_up: its compile and capture are timed apart
and reported), then the repeats are interleaved (core/timing.py: A B C A B C ...), so that a
change in the machine's load hits every implementation alike; each speed-up is a Ratio of the
paired repeats, and every cell is judged by the one stability rule.
Utilisation is against the measured compute ceiling (measure/ceilings.py) of the dtype that the
implementation computes in, never above 100%. The eager and channels-last cells (FLOORS_COUNTED) are judged by
their step measured at several batch sizes (measure/decomposition.py, stored in levers.json), the others by a
threshold on the utilisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from mnistlab.core.defaults import DEFAULT_BATCH_SIZE, IMPLEMENTATIONS
from mnistlab.core.device import device_name, resolve_device
from mnistlab.core.environment import load_snapshot
from mnistlab.core.errors import ConfigError
from mnistlab.core.failures import blame_model
from mnistlab.core.logs import lines
from mnistlab.core.schema import check
from mnistlab.core.threads import current as current_threads
from mnistlab.core.timing import LOAD_SCHEMA, Load, Ratio, interleave, time_steps
from mnistlab.core.words import percent
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.measure.bench import bound, bound_label
from mnistlab.measure.ceilings import count_step, measure_ceilings, working_set_bandwidths
from mnistlab.measure.decomposition import (
    BENCH_DECOMPOSE,
    DecomposeSettings,
    Decomposition,
    find_decomposition,
    measure_decomposition,
)
from mnistlab.measure.stepcell import STEP_CELL_SCHEMA, StepCell
from mnistlab.measure.table import text_table
from mnistlab.training.levers import Levers, TrainStep, make_step, prepare_model, warm_up
from mnistlab.training.loop import make_optimizer
from mnistlab.training.models import create_model

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

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

LEVER_CELL_SCHEMA = {
    **STEP_CELL_SCHEMA,
    "implementation": "text",
    "levers": "text",
    "compute_dtype": "text",
    "warmup_s": "seconds",
    "unavailable": "text?",
}
# the lever sets whose step dispatches the eager fp32 step's operations on the same bytes (channels-last
# changes only the layout): their floors come from the eager count; the others keep the threshold
FLOORS_COUNTED = ("eager", "channels-last")
LEVERS_SCHEMA = {
    "settings": {
        "batch_size": "positive count",
        "steps": "positive count",
        "repeats": "positive count",
        "warmup": "count",
    },
    "devices": {"*": "text"},
    "peaks_flops_per_s": {"*": {"*": "flop rate"}},
    "load?": LOAD_SCHEMA,
    "cells": [LEVER_CELL_SCHEMA],
    "decompositions?": [{"*": "any"}],
}  # each checked by Decomposition.from_dict


@dataclass
class ImplCell(StepCell):
    model: str
    device: str
    implementation: str  # the lever set's name (IMPLEMENTATION_LEVERS)
    levers: str  # Levers.describe()
    compute_dtype: str
    batch_size: int
    steps_timed: int
    warmup_s: float  # the one warm-up, compile and capture included, timed apart
    step_s: list[float] = field(default_factory=list)  # per-step time of each interleaved repeat
    train_step_flops: int = 0
    peak_flops_per_s: float = 0.0  # of compute_dtype
    unavailable: str | None = None  # the one-line reason a lever does not exist here
    train_step_bytes: int = 0  # the eager step's, for FLOORS_COUNTED lever sets (0: not counted)
    train_step_ops: int = 0
    bandwidth_bytes_per_s: float = 0.0
    op_cost_s: float = 0.0
    load: Load = field(default_factory=dict, repr=False)  # the run's load snapshots (not per cell in the file)
    # its step measured at several batch sizes (FLOORS_COUNTED cells; LeversResult attaches it)
    decomposition: Decomposition | None = field(default=None, repr=False, compare=False)

    FIELDS: ClassVar[tuple[str, ...]] = tuple(k.rstrip("?") for k in LEVER_CELL_SCHEMA)

    @property
    def bound(self) -> str:
        """On resident data the input is not what limits a step: its decomposition's judgement where it was
        measured (FLOORS_COUNTED), else its floors', else the threshold on the utilisation (bench.bound)."""
        return bound(self.utilisation, 0.0, self.floors, self.decomposition)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS}
        if self.step_s:
            d.update(
                step_median_s=self.step_median_s,
                step_min_s=self.step.min,
                step_max_s=self.step.max,
                step_spread=self.step.to_dict(),
                utilisation=self.utilisation,
                bound=self.bound,
                stability=self.stability.to_dict(),
            )
        return d


@dataclass
class LeversResult:
    FILE: ClassVar[str] = "levers.json"

    cells: list[ImplCell]
    peaks: dict[str, dict[str, float]]  # device -> dtype name -> FLOP/s
    devices: dict[str, str]
    settings: dict[str, Any]
    load: dict[str, Any] = field(default_factory=dict)  # {"start": load_snapshot(), "end": ...}
    decompositions: list[Decomposition] = field(default_factory=list)  # FLOORS_COUNTED cells' steps

    def __post_init__(self) -> None:
        for c in self.cells:
            c.decomposition = find_decomposition(self.decompositions, c.device, c.model, c.batch_size, c.implementation)

    def cell(self, device: str, model: str, implementation: str) -> ImplCell | None:
        return next(
            (
                c
                for c in self.cells
                if (c.device, c.model, c.implementation) == (device, model, implementation) and not c.unavailable
            ),
            None,
        )

    def vs_eager(self, c: ImplCell) -> Ratio | None:
        """Eager fp32's time over this one's, repeat by repeat (they ran interleaved)."""
        base = self.cell(c.device, c.model, "eager")
        return Ratio.paired(base.step_s, c.step_s, self.load) if base and c.step_s else None

    def speedup(self, c: ImplCell) -> float | None:
        r = self.vs_eager(c)
        return r.median if r else None

    def to_dict(self) -> dict[str, Any]:
        cells = []
        for c in self.cells:
            r = self.vs_eager(c)
            cells.append(
                {**c.to_dict(), "speedup_vs_eager": r.median if r else None, "vs_eager": r.to_dict() if r else None}
            )
        return {
            "settings": self.settings,
            "devices": self.devices,
            "peaks_flops_per_s": self.peaks,
            "load": self.load,
            "cells": cells,
            "decompositions": [d.to_dict() for d in self.decompositions],
            "observations": observations(self),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> LeversResult:
        """A validated levers.json (one CheckpointError line naming the file and field); judgements
        are recomputed from the measurements."""
        check(data, LEVERS_SCHEMA, where)
        load = data.get("load") or {}
        cells = [ImplCell(**{k: c[k] for k in ImplCell.FIELDS if k in c}, load=load) for c in data["cells"]]
        decompositions = [
            Decomposition.from_dict(d, f"{where}: decompositions[{i}]")
            for i, d in enumerate(data.get("decompositions") or [])
        ]
        return cls(
            cells,
            {d: dict(p) for d, p in data["peaks_flops_per_s"].items()},
            dict(data["devices"]),
            dict(data["settings"]),
            dict(load),
            decompositions,
        )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def run_levers_bench(
    split: RawSplit,
    spec: DatasetSpec,
    *,
    models: list[str],
    devices: list[str],
    implementations: list[str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    steps: int = 50,
    repeats: int = 3,
    warmup: int = 5,
    decomposition: DecomposeSettings | None = BENCH_DECOMPOSE,
    log: Callable[[str], None] = _LOG,
) -> LeversResult:
    """The lever sets side by side; then, unless `decomposition` is None, each FLOORS_COUNTED cell's step
    decomposed with its levers (measure/decomposition.py), which its bound reads."""
    unknown = [i for i in implementations if i not in IMPLEMENTATION_LEVERS]
    if unknown:
        raise ConfigError(f"unknown implementation {unknown[0]!r}; choose from: {', '.join(IMPLEMENTATIONS)}")
    load_start = load_snapshot()
    cells, names, ceilings = [], {}, {}
    peaks: dict[str, dict[str, float]] = {}  # device -> dtype -> FLOP/s
    counts, decompositions, measured_bandwidths = {}, [], {}

    def bandwidths(dev: torch.device, c: Any) -> tuple[dict[str, int], dict[str, float]]:  # once per device
        if dev.type not in measured_bandwidths:
            measured_bandwidths[dev.type] = working_set_bandwidths(
                dev, torch.get_num_threads(), c.bandwidth_bytes_per_s, c.op_cost_s
            )
        return measured_bandwidths[dev.type]

    for m in models:  # FLOPs, bytes and operations of the eager fp32 step, per model
        with blame_model(m, "while its training step was counted"):
            counts[m] = count_step(m, spec.shape, batch_size)
    for dev in (resolve_device(d) for d in devices):
        names[dev.type] = device_name(dev)
        loader = DeviceLoader(split, spec.mean, spec.std, batch_size, dev, shuffle=True, seed=0)
        batches = itertools.chain.from_iterable(loader.batches(e) for e in itertools.count(1))
        for model_name in models:
            live: list[tuple[ImplCell, TrainStep]] = []
            for impl in implementations:
                levers = IMPLEMENTATION_LEVERS[impl]
                cell = ImplCell(
                    model_name,
                    dev.type,
                    impl,
                    levers.describe(),
                    _dtype_name(levers.compute_dtype),
                    batch_size,
                    steps,
                    0.0,
                    train_step_flops=counts[model_name].flops,
                )
                cells.append(cell)
                try:
                    levers.check(dev)
                except ConfigError as e:
                    cell.unavailable = str(e)
                    log(f"  {dev.type}/{model_name}/{impl}: not available here ({e})")
                    continue
                dtype = _dtype_name(levers.compute_dtype)
                if dtype not in peaks.setdefault(dev.type, {}):
                    ceilings[dev.type, dtype] = measure_ceilings(dev, levers.compute_dtype)
                    peaks[dev.type][dtype] = ceilings[dev.type, dtype].compute_flops_per_s
                    log(
                        f"{dev.type}: {names[dev.type]}, measured {dtype} compute ceiling "
                        f"{peaks[dev.type][dtype] / 1e9:,.1f} GFLOP/s ({ceilings[dev.type, dtype].best_shape})"
                    )
                cell.peak_flops_per_s = peaks[dev.type][dtype]
                if impl in FLOORS_COUNTED:
                    c = ceilings[dev.type, dtype]
                    cell.train_step_bytes, cell.train_step_ops = counts[model_name].bytes, counts[model_name].ops
                    cell.bandwidth_bytes_per_s, cell.op_cost_s = c.bandwidth_bytes_per_s, c.op_cost_s
                torch.manual_seed(0)
                try:  # a lever this model cannot take (channels-last with .view()) leaves the other cells measured
                    model = prepare_model(
                        create_model(model_name, spec.shape),
                        levers,
                        dev,
                        sample_shape=spec.shape.sample,
                        name=model_name,
                    )
                except ConfigError as e:
                    cell.unavailable = str(e)
                    log(f"  {dev.type}/{model_name}/{impl}: not possible with this model ({e})")
                    continue
                live.append(
                    (
                        cell,
                        make_step(
                            model,
                            make_optimizer(model, lr=0.01, momentum=0.5),
                            levers,
                            dev,
                            batch_size=batch_size,
                            sample_shape=spec.shape.sample,
                        ),
                    )
                )

            # warm and time_once are called within this iteration (interleave below), so the loop's variables
            # they read are this iteration's
            def warm(pair: tuple[ImplCell, TrainStep]) -> None:
                cell, step = pair
                x, y = next(batches)  # noqa: B023
                with blame_model(cell.model, "while being timed"):
                    cell.warmup_s = warm_up(step, x.clone(), y.clone(), steps=max(warmup, 1))
                log(f"  {dev.type}/{model_name}/{cell.implementation}: warmed up in {cell.warmup_s:.2f} s")  # noqa: B023

            def time_once(pair: tuple[ImplCell, TrainStep]) -> float:
                data = iter([next(batches) for _ in range(steps)])  # noqa: B023 - gathered before the clock starts
                with blame_model(pair[0].model, "while being timed"):
                    return time_steps(lambda: pair[1](*next(data)), steps, dev)  # noqa: B023

            times = interleave(live, warm_up=warm, time_once=time_once, repeats=repeats)
            for (cell, _), t in zip(live, times, strict=True):
                cell.step_s = t
            for cell, _ in live:
                if decomposition is not None and cell.implementation in FLOORS_COUNTED:
                    ceiling = ceilings[dev.type, cell.compute_dtype]
                    with blame_model(model_name, "while its step was timed at several batch sizes"):
                        decompositions.append(
                            measure_decomposition(
                                model_name,
                                spec.shape,
                                batch_size=batch_size,
                                settings=decomposition,
                                device=dev.type,
                                ceilings=ceiling,
                                cost=counts[model_name],
                                bandwidths=bandwidths(dev, ceiling),
                                levers=IMPLEMENTATION_LEVERS[cell.implementation],
                                implementation=cell.implementation,
                                log=log,
                            )
                        )
    load = {"start": load_start, "end": load_snapshot()}
    for done in cells:
        done.load = load
    settings = {
        "batch_size": batch_size,
        "steps": steps,
        "repeats": repeats,
        "warmup": warmup,
        "implementations": implementations,
        "dataset": spec.name,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "threads": current_threads().to_dict(),
    }
    return LeversResult(cells, peaks, names, settings, load, decompositions)


def observations(result: LeversResult) -> list[str]:
    """Why each lever helped or did not, from this run's numbers and judgements."""
    out = []
    for c in result.cells:
        if c.unavailable:
            out.append(f"{c.device}/{c.model} {c.implementation}: not measured: {c.unavailable}.")
            continue
        base = result.cell(c.device, c.model, "eager")
        r = result.vs_eager(c)
        unstable = "" if c.stability.stable else f" [{c.stability.reason}]"
        if c.implementation == "eager" or base is None or r is None:
            judged = c.decomposition.brief() if c.decomposition else bound_label(c.bound)
            out.append(
                f"{c.device}/{c.model} {c.implementation}: {c.step_median_s * 1e3:.2f} ms per step, "
                f"{percent(c.utilisation)} of the measured {c.compute_dtype} compute ceiling; {judged}"
                f"{unstable}."
            )
            continue
        faster = r.median >= 1
        why = []
        if c.compute_dtype != "float32":
            gain = c.peak_flops_per_s / base.peak_flops_per_s
            why.append(
                f"its compute ceiling in {c.compute_dtype} is {gain:.1f}x float32's and it reaches "
                f"{c.utilisation:.0%} of it (eager fp32: {base.utilisation:.0%} of float32's)"
            )
        if "channels-last" in c.implementation:
            why.append(
                "channels-last lets the convolutions skip the layout reorders around oneDNN/cuDNN kernels"
                if faster
                else "for this model the layout change costs more than it saves"
            )
        if c.implementation == "compiled":
            why.append(
                f"compiling took {c.warmup_s:.1f} s (untimed); fused elementwise work "
                + ("pays off" if faster else "does not pay off when the matmuls and convs dominate")
            )
        if c.implementation == "cuda-graphs":
            why.append("one graph launch replaces every per-kernel launch of the step")
        out.append(
            f"{c.device}/{c.model} {c.implementation}: {c.step_median_s * 1e3:.2f} ms per step; against "
            f"eager fp32 in the same run: {r.marked()}" + (f"; {'; '.join(why)}" if why else "") + "."
        )
    return out


def format_table(result: LeversResult) -> str:
    rows = []
    for c in result.cells:
        if c.unavailable:
            rows.append([f"{c.device}/{c.model}", c.implementation, "not measured (see below)", *[""] * 7])
            continue
        r = result.vs_eager(c)
        ratio = (
            f"{r.median:.2f}x ({r.spread.min:.2f}-{r.spread.max:.2f})"
            if r and r.spread.n > 1
            else f"{r.median:.2f}x (1 repeat, no range)"
            if r and r.spread.n
            else "-"
        )
        rows.append(
            [
                f"{c.device}/{c.model}",
                c.implementation,
                f"{c.step_median_s * 1e3:.2f}",
                f"{c.step.min * 1e3:.2f}-{c.step.max * 1e3:.2f}",
                ratio,
                c.compute_dtype,
                f"{c.utilisation:.0%}",
                c.bound,
                f"{c.warmup_s:.2f}",
                "stable" if c.stability.stable else "unstable",
            ]
        )
    lines = [
        text_table(
            [
                "device/model",
                "implementation",
                "ms/step",
                "min-max",
                "eager/this",
                "dtype",
                "util",
                "bound",
                "warm-up s",
                "stability",
            ],
            rows,
            left=2,
        )
    ]
    lines.append(
        "ms/step: median of the interleaved repeats (min-max beside it); eager/this: median (min-max) of the "
        "per-repeat ratios eager fp32 / this one; util: achieved FLOP/s over the measured compute ceiling "
        "of the dtype the "
        "step computes in; stability: core/timing.py's one rule"
    )
    return "\n".join(lines)


def levers_text(result: LeversResult) -> str:
    """levers.txt: ceilings, table, sentences (the job writes it beside levers.json)."""
    peaks = [
        f"{d}: {result.devices[d]}, measured compute ceilings: "
        + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in p.items())
        for d, p in result.peaks.items()
    ]
    return "\n".join([*peaks, format_table(result), "", *observations(result)])

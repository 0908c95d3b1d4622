"""What binds a training step, measured: the step timed at several batch sizes, split into a fixed part and a
per-sample part.

A step's time is close to `fixed + per_sample x batch`. The fixed part is what a step costs whatever its batch:
Python, the dispatcher, autograd's bookkeeping, the optimizer's update of every parameter. The per-sample part
is the arithmetic and memory traffic that grow with the batch. Both are measured here, not modelled:

- the step is the bench cell's (training.levers.make_step, eager fp32, the notebook's SGD), on a batch already in
  memory (no data loading), at batches 1, 8, 64, 256 and the cell's own, on the cell's thread count;
- the batches are timed in interleaved repeats (core/timing.py: warm-up, then A B C ... A B C ...);
- the line is fitted by Theil-Sen (the median of the slopes between every pair of timings at different batches,
  then the median intercept; scipy.stats.theilslopes): one slow repeat moves it far less than least squares;
  it is fitted to the batches up to the cell's (a per-sample cost changes at larger batches, whose activations
  leave a cache: those batches say how far the line holds); its quality is the timings' relative residuals
  (median and largest), and each repeat's own fit gives the parts' spread.

At the cell's batch the fixed share of the step is a measurement. `judge` names what binds the step from it and
from the per-sample part's two floors (its FLOPs at the compute ceiling measured on the same threads; its bytes at
the bandwidth of a copy the size of the step's working set, measure/ceilings.bandwidth_for). The judgement is a
function of these values alone, with fixed tolerances (SHARE_BAND, FLOOR_TOLERANCE), never of a cell's own spread:
two cells with the same values get the same label, however differently their repeats scattered. Where the line
does not fit its own timings (their median residual above FIT_TOLERANCE, as on a machine so busy that a step's
time hardly depends on its batch), the data cannot separate the two parts, and the label says 'between' them.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from mnistlab.core.defaults import DEFAULT_BATCH_SIZE
from mnistlab.core.errors import CheckpointError, ConfigError
from mnistlab.core.logs import lines
from mnistlab.core.schema import NONEMPTY, check
from mnistlab.core.timing import Load, Spread, Stability, stability
from mnistlab.core.words import percent
from mnistlab.core.writer import FILES, Writer
from mnistlab.data.datasets import DataShape
from mnistlab.measure.ceilings import FLOOR_TOLERANCE, Ceilings, StepCost, _OpCounter

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

DEFAULT_BATCHES = (1, 8, 64, 256)
FIXED, ARITHMETIC, MEMORY = "fixed per-step cost", "arithmetic", "memory"
BINDS = (FIXED, ARITHMETIC, MEMORY)
SHARE_BAND = 0.10  # a fixed share within 50% +- this: "between" the fixed part and the per-sample one
FIT_TOLERANCE = 0.25  # timings off the fitted line by more than this (median): the parts cannot be told apart
# FLOOR_TOLERANCE (measure/ceilings.py): per-sample floors within 25% of each other: "between arithmetic and memory"
FIT_METHOD = "Theil-Sen"
CHUNK_S = 0.05  # seconds of steps per timed repeat of one batch (at least one step)


@dataclass(frozen=True)
class DecomposeSettings:
    """How a decomposition is timed: the batches (the cell's own is added), the interleaved repeats, and the
    seconds of steps per timed repeat of one batch (at least one step)."""

    batches: tuple[int, ...] = DEFAULT_BATCHES
    repeats: int = 5
    chunk_s: float = CHUNK_S


# the bench's (jobs/bench.py, and the quick lab's): 3 repeats of about 0.02 s per batch keep the quick lab's bench
# within about 30% of its time without one (docs/benchmarks.md), and still give each part a range
BENCH_DECOMPOSE = DecomposeSettings(DEFAULT_BATCHES, repeats=3, chunk_s=0.02)

_SNAPSHOT = {"load_avg_1m": "number?", "cpu_count": "int?"}
_COUNT = {"batch": "positive count", "flops": "count", "bytes": "count", "ops": "positive count"}
DECOMPOSITION_SCHEMA = {
    "model": "text",
    "device": "text",
    "machine": "text",
    "threads": "positive count",
    "batch_size": "positive count",
    "timings": [{"batch": "positive count", "step_s": ["positive seconds", NONEMPTY]}, NONEMPTY],
    "counted": [_COUNT, NONEMPTY],
    "footprint_bytes": "positive count",
    "compute_flops_per_s": "flop rate",
    "op_cost_s": "positive seconds",
    "probe_sizes": {"*": "positive count"},
    "bandwidths": {"*": "byte rate"},
    "load?": {"start?": _SNAPSHOT, "end?": _SNAPSHOT},
    "date?": "text?",
    "implementation?": "text",
}


# --- the fit --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineFit:
    """step_s = fixed_s + per_sample_s x batch, fitted robustly, and how well it fits."""

    fixed_s: float
    per_sample_s: float
    per_sample_low_s: float  # the slope's 95% confidence interval (Theil-Sen's, from the pairwise slopes)
    per_sample_high_s: float
    residual_median: float  # |measured - fitted| / measured, over every timing
    residual_max: float
    points: int
    method: str = FIT_METHOD

    def at(self, batch: float) -> float:
        return self.fixed_s + self.per_sample_s * batch

    def words(self) -> str:
        return (
            f"{self.method} over {self.points} timings: residuals median {percent(self.residual_median)}, "
            f"at most {percent(self.residual_max)}"
        )


def fit_line(batches: Sequence[float], times: Sequence[float]) -> LineFit:
    """Theil-Sen's line through (batch, time): robust to a minority of slow timings. Needs two distinct batches."""
    from scipy.stats import theilslopes

    if len(batches) != len(times) or len(set(batches)) < 2:
        raise ConfigError("a fixed and a per-sample part need timings at two batch sizes or more")
    slope, intercept, low, high = theilslopes(times, batches, alpha=0.95)
    fitted = [intercept + slope * b for b in batches]
    rel = [abs(t - f) / t for t, f in zip(times, fitted, strict=True)]
    return LineFit(
        float(intercept),
        float(slope),
        float(low),
        float(high),
        float(statistics.median(rel)),
        float(max(rel)),
        len(times),
    )


# --- the judgement --------------------------------------------------------------------------------------


def per_sample_binds(compute_s: float, memory_s: float | None) -> str:
    """What the per-sample part is closer to: the larger of its floors (its FLOPs at the compute ceiling, its
    bytes at the bandwidth of its working set), or 'between arithmetic and memory' within FLOOR_TOLERANCE;
    'arithmetic' where the memory floor was dropped (None)."""
    if memory_s is None or memory_s <= 0:
        return ARITHMETIC
    hi, lo = max(compute_s, memory_s), min(compute_s, memory_s)
    if lo > 0 and hi / lo <= 1 + FLOOR_TOLERANCE:
        return f"between {ARITHMETIC} and {MEMORY}"
    return ARITHMETIC if compute_s >= memory_s else MEMORY


def judge(
    fixed_share: float, compute_per_sample_s: float, memory_per_sample_s: float | None, fit_residual: float = 0.0
) -> str:
    """THE judgement of what binds a step, from measured values with fixed tolerances (deterministic: equal
    values, equal labels). 'fixed per-step cost' when the fixed part is more than half the step by
    SHARE_BAND; the per-sample part's floor (`per_sample_binds`) when it is less than half by SHARE_BAND;
    else, or where the line misses its timings by more than FIT_TOLERANCE (`fit_residual`, their median relative
    residual), 'between fixed per-step cost and <the larger per-sample floor>'."""
    per_sample = per_sample_binds(compute_per_sample_s, memory_per_sample_s)
    larger = ARITHMETIC if memory_per_sample_s is None or compute_per_sample_s >= memory_per_sample_s else MEMORY
    if fit_residual > FIT_TOLERANCE:
        return f"between {FIXED} and {larger}"
    if fixed_share >= 0.5 + SHARE_BAND:
        return FIXED
    if fixed_share <= 0.5 - SHARE_BAND:
        return per_sample
    return f"between {FIXED} and {larger}"


def bound_label(binds: str) -> str:
    """'bound by its fixed per-step cost', 'bound by arithmetic', or the 'between ...' label as it is."""
    if binds.startswith("between"):
        return binds
    return f"bound by its {binds}" if binds == FIXED else f"bound by {binds}"


# --- the result -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decomposition:
    """One model's step timed at several batches on one thread count, with what it was judged against."""

    FILE: ClassVar[str] = "decomposition.json"

    model: str
    device: str
    machine: str  # the CPU's name and thread count
    threads: int
    batch_size: int  # the cell's batch: where the fixed share is read
    timings: dict[int, tuple[float, ...]]  # batch -> seconds per step of each interleaved repeat
    counted: dict[int, tuple[int, int, int]]  # batch -> (FLOPs, bytes, operations) of one counted step
    footprint_bytes: int  # distinct memory the step at batch_size touched: its working set
    compute_flops_per_s: float  # the compute ceiling measured on `threads`
    op_cost_s: float  # one trivial operation, measured on `threads`
    probe_sizes: dict[str, int]  # level -> the working set of its bandwidth probe (a copy's source + destination)
    bandwidths: dict[str, float]  # level -> bytes per second
    load: Load = field(default_factory=dict)
    date: str | None = None
    implementation: str = "eager"  # the lever set of its step (measure/levers_bench.py's names)

    # -- the fit and the parts
    @property
    def fitted_batches(self) -> list[int]:
        """The batches the line is fitted to: those up to the cell's (at least the two smallest). A step's
        per-sample cost changes at larger batches (its activations leave a cache): the parts at the cell's batch
        are read from the batches it is made of, and the larger ones show how far the line holds (`beyond`)."""
        batches = sorted(self.timings)
        upto = [b for b in batches if b <= self.batch_size]
        return upto if len(upto) >= 2 else batches[:2]

    @property
    def fit(self) -> LineFit:
        pts = [(b, t) for b in self.fitted_batches for t in self.timings[b]]
        return fit_line([b for b, _ in pts], [t for _, t in pts])

    def beyond(self) -> dict[int, float]:
        """Each larger batch's median step over the line's extrapolation, less 1: +0.3 is 30% slower than the line."""
        fit = self.fit
        return {
            b: statistics.median(ts) / fit.at(b) - 1
            for b, ts in sorted(self.timings.items())
            if b not in self.fitted_batches and fit.at(b) > 0
        }

    def repeat_fits(self) -> list[LineFit]:
        """One fit per repeat (repeat i of every batch ran side by side): the parts' spread."""
        n = min(len(ts) for ts in self.timings.values())
        batches = self.fitted_batches
        return [fit_line(batches, [self.timings[b][i] for b in batches]) for i in range(n)] if n > 1 else []

    @property
    def fixed_spread(self) -> Spread:
        return Spread.of([f.fixed_s for f in self.repeat_fits()])

    @property
    def per_sample_spread(self) -> Spread:
        return Spread.of([f.per_sample_s for f in self.repeat_fits()])

    @property
    def step(self) -> Spread:
        """The step measured at the cell's batch."""
        return Spread.of(self.timings[self.batch_size])

    @property
    def stability(self) -> Stability:
        return stability(self.timings[self.batch_size], self.load)

    @property
    def fixed_share(self) -> float:
        """The fitted fixed part over the step measured at the cell's batch, in [0, 1]."""
        return min(1.0, max(0.0, self.fit.fixed_s / self.step.median))

    def fixed_share_spread(self) -> Spread:
        """Each repeat's fixed part over that repeat's step at the cell's batch."""
        fits, ts = self.repeat_fits(), self.timings[self.batch_size]
        return Spread.of([min(1.0, max(0.0, f.fixed_s / t)) for f, t in zip(fits, ts, strict=False)])

    # -- what the step does, per sample and per step
    @property
    def flops_per_sample(self) -> float:
        b = max(self.counted)
        return self.counted[b][0] / b

    @property
    def bytes_per_sample(self) -> float:
        """The slope of the counted bytes between the smallest and largest counted batch (activations)."""
        lo, hi = min(self.counted), max(self.counted)
        slope = (self.counted[hi][1] - self.counted[lo][1]) / (hi - lo) if hi > lo else self.counted[hi][1] / hi
        return max(0.0, slope)

    @property
    def ops(self) -> int:
        return self.counted[max(self.counted)][2]

    @property
    def bandwidth(self) -> tuple[str, float, str]:
        from mnistlab.measure.ceilings import bandwidth_for

        return bandwidth_for(self.footprint_bytes, self.probe_sizes, self.bandwidths)

    # -- floors and the judgement
    @property
    def compute_per_sample_s(self) -> float:
        return self.flops_per_sample / self.compute_flops_per_s

    @property
    def memory_per_sample_s(self) -> float:
        return self.bytes_per_sample / self.bandwidth[1]

    @property
    def dispatch_floor_s(self) -> float:
        """The fixed part's own floor: every operation at the cost of a trivial one."""
        return self.ops * self.op_cost_s

    @property
    def binds(self) -> str:
        return judge(self.fixed_share, self.compute_per_sample_s, self.memory_per_sample_s, self.fit.residual_median)

    def brief(self) -> str:
        """The judgement and the two measurements it rests on, in one clause: for a sentence about a bench cell."""
        fit, sp, b = self.fit, self.step, self.batch_size
        share = self.fixed_share_spread()
        within = f", repeats {percent(share.min)}\u2013{percent(share.max)}" if share.n > 1 else ""
        a, m = self.compute_per_sample_s, self.memory_per_sample_s
        floors = (f"{fit.per_sample_s / a:.1f}x its arithmetic floor" if a > 0 else "no counted arithmetic") + (
            f", {fit.per_sample_s / m:.1f}x its memory floor ({self.bandwidth[0]})" if m > 0 else ""
        )
        per = (
            f"each sample adds {fit.per_sample_s * 1e6:,.2f} us ({floors})"
            if fit.per_sample_s > 0
            else f"no per-sample part can be told from zero (the fit gives {fit.per_sample_s * 1e6:,.2f} us)"
        )
        misfit = (
            f"; the line misses its timings by {percent(fit.residual_median)} (median): the parts cannot be told apart"
            if fit.residual_median > FIT_TOLERANCE
            else ""
        )
        unstable = "" if self.stability.stable else " [unstable]"
        span = sorted(self.timings)
        return (
            f"{bound_label(self.binds)}: timed apart at batches {span[0]}\u2013{span[-1]}, "
            f"{max(fit.fixed_s, 0.0) * 1e3:,.3f} ms of its {sp.median * 1e3:,.3f} ms step at batch {b} is fixed "
            f"({percent(self.fixed_share)}{within}) and {per}{misfit}{unstable}"
        )

    def words(self) -> str:
        fit, sp, b = self.fit, self.step, self.batch_size
        share = self.fixed_share_spread()
        share_range = f"; each repeat's own fit: {percent(share.min)}\u2013{percent(share.max)}" if share.n > 1 else ""
        ps = fit.per_sample_s
        a, m = self.compute_per_sample_s, self.memory_per_sample_s
        level, bw, why = self.bandwidth
        fixed = (
            f"{fit.fixed_s * 1e3:.3f} ms of the {sp.median * 1e3:.3f} ms step at batch {b} is fixed "
            f"({percent(self.fixed_share)}{share_range}): it does not grow with the batch; {self.ops} operations "
            f"at {self.op_cost_s * 1e6:.1f} us each account for {self.dispatch_floor_s * 1e3:.3f} ms of it, the "
            f"rest is Python, autograd and the optimizer over the parameters"
            if fit.fixed_s > 0
            else f"no fixed part can be told from zero (the fit gives {fit.fixed_s * 1e3:.3f} ms)"
        )
        times = f"{ps / a:.1f}x its arithmetic floor" if a > 0 else "no counted arithmetic"
        per = (
            f"{'each sample adds' if ps > 0 else 'no per-sample part can be told from zero: the fit gives'} "
            f"{ps * 1e6:.2f} us ({times}, "
            f"{a * 1e6:.2f} us at the {self.compute_flops_per_s / 1e9:,.0f} GFLOP/s measured on "
            f"{self.threads} thread{'s' * (self.threads != 1)}; its memory floor is {m * 1e6:.2f} us at "
            f"{bw / 1e9:,.0f} GB/s, the {level} probe's: {why})"
        )
        beyond = self.beyond()
        held = (
            "; beyond it, the measured step is "
            + ", ".join(f"{v:+.0%} at batch {b}" for b, v in beyond.items())
            + " of the line"
            if beyond
            else ""
        )
        span = self.fitted_batches
        misfit = (
            f" (a median above {percent(FIT_TOLERANCE)}: the parts cannot be told apart)"
            if fit.residual_median > FIT_TOLERANCE
            else ""
        )
        return (
            f"{self.model} on {self.machine}: {bound_label(self.binds)}. {fixed[0].upper()}{fixed[1:]}; {per}. "
            f"Fit, batches {span[0]}\u2013{span[-1]}: {fit.words()}{misfit}{held}"
            + ("" if self.stability.stable else f" [{self.stability.reason}]")
            + "."
        )

    def to_dict(self) -> dict[str, Any]:
        """The measurements, then the judgements made from them (recomputed on reading, never read back)."""
        level, bw, why = self.bandwidth
        return {
            "model": self.model,
            "device": self.device,
            "machine": self.machine,
            "threads": self.threads,
            "batch_size": self.batch_size,
            "date": self.date,
            "implementation": self.implementation,
            "timings": [{"batch": b, "step_s": list(ts)} for b, ts in sorted(self.timings.items())],
            "counted": [
                {"batch": b, "flops": c[0], "bytes": c[1], "ops": c[2]} for b, c in sorted(self.counted.items())
            ],
            "footprint_bytes": self.footprint_bytes,
            "compute_flops_per_s": self.compute_flops_per_s,
            "op_cost_s": self.op_cost_s,
            "probe_sizes": dict(self.probe_sizes),
            "bandwidths": dict(self.bandwidths),
            "load": dict(self.load),
            "fitted_batches": self.fitted_batches,
            "fit": asdict(self.fit),
            "beyond": {str(b): v for b, v in self.beyond().items()},
            "fixed_spread": self.fixed_spread.to_dict(),
            "per_sample_spread": self.per_sample_spread.to_dict(),
            "fixed_share": self.fixed_share,
            "fixed_share_spread": self.fixed_share_spread().to_dict(),
            "compute_per_sample_s": self.compute_per_sample_s,
            "memory_per_sample_s": self.memory_per_sample_s,
            "memory_bandwidth": {"level": level, "bytes_per_s": bw, "why": why},
            "dispatch_floor_s": self.dispatch_floor_s,
            "binds": self.binds,
            "stability": self.stability.to_dict(),
            "words": self.words(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = FILE) -> Decomposition:
        """A validated decomposition: a damaged or hostile one is one CheckpointError line naming the field."""
        check(d, DECOMPOSITION_SCHEMA, where)
        timings = {t["batch"]: tuple(t["step_s"]) for t in d["timings"]}
        counted = {c["batch"]: (c["flops"], c["bytes"], c["ops"]) for c in d["counted"]}
        if len(timings) != len(d["timings"]) or len(timings) < 2:
            raise CheckpointError(f"{where}: field 'timings' needs two or more distinct batch sizes, once each")
        if d["batch_size"] not in timings:
            raise CheckpointError(f"{where}: field 'batch_size' ({d['batch_size']}) is not among the timed batches")
        if not d["bandwidths"] or set(d["bandwidths"]) != set(d["probe_sizes"]) or "DRAM" not in d["bandwidths"]:
            raise CheckpointError(
                f"{where}: fields 'bandwidths' and 'probe_sizes' must name the same levels, DRAM among them"
            )
        given = {f.name: d.get(f.name) for f in fields(cls)}
        load, implementation = dict(d.get("load") or {}), d.get("implementation", "eager")
        return cls(**{**given, "timings": timings, "counted": counted, "load": load, "implementation": implementation})


def find_decomposition(
    decompositions: Sequence[Decomposition], device: str, model: str, batch_size: int, implementation: str = "eager"
) -> Decomposition | None:
    """The one of `model`'s step at `batch_size` on `device` with `implementation`'s levers (None: not measured)."""
    key = (device, model, batch_size, implementation)
    return next((d for d in decompositions if (d.device, d.model, d.batch_size, d.implementation) == key), None)


def write_decompositions(results: Sequence[Decomposition], folder: Path, writer: Writer = FILES) -> Path:
    """decomposition.json in `folder`, through the job's writer (a benchmark script's: FILES)."""
    path = Path(folder) / Decomposition.FILE
    writer.json(path, {"decompositions": [r.to_dict() for r in results]})
    return path


# --- measuring ------------------------------------------------------------------------------------------


def step_footprint(model_name: str, shape: DataShape, batch_size: int) -> int:
    """Bytes of the distinct memory one steady training step (after the first) of a fresh `model_name` touches:
    its weights, gradients, momentum buffers, batch and activations. The allocator reuses freed blocks, which
    this counts once, as a cache sees them."""
    from mnistlab.training.loop import make_optimizer
    from mnistlab.training.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(model_name, shape)
        opt = make_optimizer(model, lr=0.01, momentum=0.5)
        x, y = torch.randn(batch_size, *shape.sample), torch.randint(0, shape.classes, (batch_size,))

        def one() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        one()
        with _OpCounter() as seen:
            one()
    return sum(seen.storages.values())


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """torch's intra-op thread count set to `n` inside the block (None: as it is), restored after it."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@dataclass
class _Batch:
    batch: int
    step: Callable[[], Any]
    n: int = 1


def measure_decomposition(
    model_name: str,
    shape: DataShape,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    settings: DecomposeSettings = DecomposeSettings(),
    threads: int | None = None,
    device: str = "cpu",
    ceiling_s: float = 0.1,
    ceilings: Ceilings | None = None,
    cost: StepCost | None = None,
    bandwidths: tuple[dict[str, int], dict[str, float]] | None = None,
    levers: Any = None,
    implementation: str = "eager",
    log: Callable[[str], None] = _LOG,
) -> Decomposition:
    """Time `model_name`'s training step at `settings.batches` and `batch_size` on `threads` (default: torch's count
    now), count it, and return the decomposition. What a caller has measured on the same device and threads is reused:
    `ceilings` (the compute ceiling, the cost of one operation and DRAM's bandwidth), `cost` (the step counted at
    `batch_size`) and `bandwidths` (the probes' sizes and rates); what is not given is measured here. `levers`: the
    step's (training.levers.Levers; default eager fp32), named `implementation`."""
    import datetime

    from mnistlab.core.device import device_name, resolve_device
    from mnistlab.core.environment import load_snapshot
    from mnistlab.core.timing import interleave, time_steps
    from mnistlab.measure.ceilings import count_step, measure_ceilings, working_set_bandwidths
    from mnistlab.training.levers import Levers, make_step, prepare_model
    from mnistlab.training.loop import make_optimizer
    from mnistlab.training.models import create_model

    if settings.repeats < 2:
        raise ConfigError("a decomposition needs 2 repeats or more (each repeat's fit gives the parts' spread)")
    sizes = sorted({*settings.batches, batch_size})
    if len(sizes) < 2 or sizes[0] < 1:
        raise ConfigError(f"batch sizes {sizes}: two or more, each 1 or more")
    dev = resolve_device(device)
    levers = levers or Levers()
    with torch_threads(threads) as n_threads:
        load_start = load_snapshot()
        top = batch_size if cost is not None else sizes[-1]
        log(f"{model_name}: counting one step at batches {sizes[0]} and {top}, and its working set at {batch_size}")
        counted = {
            sizes[0]: count_step(model_name, shape, sizes[0]),
            top: cost if cost is not None else count_step(model_name, shape, top),
        }
        footprint = step_footprint(model_name, shape, batch_size)
        ceilings = ceilings or measure_ceilings(dev, seconds=ceiling_s)
        levels, rates = bandwidths or working_set_bandwidths(
            dev, n_threads, ceilings.bandwidth_bytes_per_s, ceilings.op_cost_s
        )
        cells = []
        for b in sizes:
            torch.manual_seed(0)
            model = prepare_model(
                create_model(model_name, shape), levers, dev, sample_shape=shape.sample, name=model_name
            )
            opt = make_optimizer(model, lr=0.01, momentum=0.5)
            step = make_step(model, opt, levers, dev, batch_size=b, sample_shape=shape.sample)
            x, y = torch.randn(b, *shape.sample, device=dev), torch.randint(0, shape.classes, (b,), device=dev)
            cells.append(_Batch(b, functools.partial(step, x, y)))

        def warm(c: _Batch) -> None:  # three steps, timed together: a repeat is as many steps as fill chunk_s
            # (at least one); their mean, not one step's time, so that one step's luck on a busy machine does not
            # make a repeat of thousands of steps (the first, which creates the optimizer's state, errs short)
            c.n = max(1, min(2000, round(settings.chunk_s / max(time_steps(c.step, 3, dev), 1e-7))))

        log(f"{model_name}: timing batches {sizes} on {n_threads} thread(s), {settings.repeats} interleaved repeats")
        times = interleave(
            cells, warm_up=warm, time_once=lambda c: time_steps(c.step, c.n, dev), repeats=settings.repeats
        )
        load = {"start": load_start, "end": load_snapshot()}
        machine = device_name(dev)
    return Decomposition(
        model_name,
        dev.type,
        machine,
        n_threads,
        batch_size,
        {c.batch: tuple(t) for c, t in zip(cells, times, strict=True)},
        {b: (c.flops, c.bytes, c.ops) for b, c in counted.items()},
        footprint,
        ceilings.compute_flops_per_s,
        ceilings.op_cost_s,
        dict(levels),
        dict(rates),
        load,
        datetime.date.today().isoformat(),
        implementation,
    )

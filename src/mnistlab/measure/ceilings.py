"""Ceilings and floors: the most a device can do, and the least time a training step could take.

Ceilings, per device and dtype, measured as ceilings:
- compute: the best FLOP/s over several matmul shapes (square, and the shapes the built-in models run)
  and a 3x3 convolution, each repeated; a step seen running faster raises it (measure/stepcell.py's
  ceiling_flops_per_s), so that no utilisation is ever above 100% of it;
- memory bandwidth: a copy of a tensor far larger than the caches (bytes read plus bytes written);
  and, for a step whose working set is smaller, copies sized to the L2 and the L3 (`measure_bandwidths`,
  `bandwidth_for`), so that a floor can use the bandwidth of the memory the step actually touches;
- per-operation cost: one dispatched operation on a one-element tensor (Python, dispatcher, a kernel
  launch on a GPU);
- all of them on the thread count torch has when they run (`threads`): a ceiling is for that count;
- and, beside the measured compute ceiling, a theoretical one derived from what the machine says it is
  (the cores the threads can use x the highest clock the CPU states x FLOPs per cycle), with the
  assumption it needs said in words; no clock stated, no figure; and never a figure below a measured
  one (`Theoretical.checked`).

A step's floors: its FLOPs over the compute ceiling, its bytes over the bandwidth, its operations times
the per-operation cost. What binds a step is measured (measure/decomposition.py); the floors' own verdict
(`Floors.bound`) is kept for a bench file from before the decompositions: the largest floor, or "between" it
and the next when they are within FLOOR_TOLERANCE of each other, a fixed tolerance, so that equal floors get
equal labels whatever the spread of the repeats.
"""

from __future__ import annotations

import operator
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mnistlab.core.schema import is_number
from mnistlab.core.timing import best_rate, time_steps
from mnistlab.data.datasets import DataShape

FLOORS = ("compute", "memory", "overhead")
NEEDS = "; the measured "  # where Theoretical.checked's words on the clock a measurement needs begin
FLOOR_TOLERANCE = 0.25  # two floors within 25% of each other: "between" them (a fixed tolerance, never the spread)


@dataclass(frozen=True)
class Theoretical:
    flops_per_s: tuple[float, float] | None  # (low, high): the range the assumption spans; None: not derived
    derivation: str  # one line: how, and what had to be assumed
    cores: int | None = None  # the cores it is for: those the step's threads can use
    per_cycle: tuple[float, float] | None = None  # FLOP per cycle per core, (low, high)
    hz: float | None = None  # the highest clock the machine states; None: unknown

    def checked(self, measured_flops_per_s: float) -> Theoretical:
        """Never a theoretical figure below a measured one. A measurement above the low end rules that
        end out (1 FMA unit per core); one above the high end means the clock the machine states is
        below the one its cores ran at: then no figure is given, and the words say why. Where the clock
        is unknown, the words give the clock the measurement needs."""
        m = measured_flops_per_s
        if m <= 0:
            return self
        if not (self.cores and self.per_cycle):  # a file from before the derivation was recorded
            if self.flops_per_s and m > self.flops_per_s[1]:
                return replace(
                    self,
                    flops_per_s=None,
                    derivation=(
                        f"not given: {self.derivation} gives {self.flops_per_s[1] / 1e9:,.0f} GFLOP/s, below the "
                        f"measured {m / 1e9:,.0f} GFLOP/s"
                    ),
                )
            return self
        needs = m / (self.cores * self.per_cycle[1])  # Hz, at the most FLOP per cycle assumed
        if self.flops_per_s is None:
            if self.hz is None:  # derived but for the clock (checked again: the clock the faster rate needs)
                base = self.derivation.split(NEEDS)[0]
                return replace(
                    self,
                    derivation=f"{base}{NEEDS}{m / 1e9:,.0f} GFLOP/s needs "
                    f"at least {needs / 1e9:.2f} GHz at {self.per_cycle[1]:g} FLOP per cycle",
                )
            return self
        low, high = self.flops_per_s
        if m > high:
            # a bench file read back may hold a figure without its clock
            clock = "the clock assumed" if self.hz is None else f"the clock stated ({self.hz / 1e9:.2f} GHz)"
            return replace(
                self,
                flops_per_s=None,
                derivation=(
                    f"not given: {self.derivation} gives {high / 1e9:,.0f} GFLOP/s, below the measured "
                    f"{m / 1e9:,.0f} GFLOP/s, so {clock} is below the one the "
                    f"cores ran at (at least {needs / 1e9:.2f} GHz), or the FLOP per cycle assumed are too few"
                ),
            )
        if m > low:
            return replace(
                self,
                flops_per_s=(high, high),
                derivation=(
                    f"{self.derivation}; the measured {m / 1e9:,.0f} GFLOP/s rules out the low end "
                    f"({low / 1e9:,.0f} GFLOP/s), so the high one is given"
                ),
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops_per_s": list(self.flops_per_s) if self.flops_per_s else None,
            "derivation": self.derivation,
            "cores": self.cores,
            "per_cycle": list(self.per_cycle) if self.per_cycle else None,
            "hz": self.hz,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Theoretical:
        """From a bench file's ceilings (read as 'any': what does not fit is left out, never trusted)."""

        def pair(v: Any) -> tuple[float, float] | None:
            ok = isinstance(v, list) and len(v) == 2 and all(is_number(x) and x > 0 for x in v)
            return (float(v[0]), float(v[1])) if ok else None

        cores, hz = d.get("cores"), d.get("hz")
        cores = cores if isinstance(cores, int) and not isinstance(cores, bool) and cores > 0 else None
        hz = float(hz) if isinstance(hz, (int, float)) and is_number(hz) and hz > 0 else None
        return cls(
            pair(d.get("flops_per_s")), str(d.get("derivation") or "not derived"), cores, pair(d.get("per_cycle")), hz
        )


@dataclass(frozen=True)
class Ceilings:
    device: str
    dtype: str
    compute_flops_per_s: float  # best measured (matmul shapes, convolution)
    best_shape: str  # which measurement gave it
    bandwidth_bytes_per_s: float
    op_cost_s: float  # one trivial dispatched operation
    theoretical: Theoretical
    threads: int | None = None  # the CPU threads the probes ran with: the ceiling is for this count (None: a GPU)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "theoretical": self.theoretical.to_dict()}


# (m, k, n) of the matmuls probed: square ones, and the built-in models' own (batch 64: the MLP's
# layers, the CNN's head) so that the ceiling is one the models can actually meet
MATMUL_SHAPES_CPU = ((1024, 1024, 1024), (512, 512, 512), (64, 784, 128), (64, 128, 64), (4096, 128, 128))
MATMUL_SHAPES_GPU = ((8192, 8192, 8192), (4096, 4096, 4096), (64, 784, 128))
CONV_PROBE = (64, 32, 28, 28, 64)  # batch, in channels, height, width, out channels; 3x3, padding 1


def compute_probes(device: torch.device, dtype: torch.dtype, seconds: float) -> dict[str, float]:
    """FLOP/s of each probe: the matmul shapes and one 3x3 convolution."""
    out: dict[str, float] = {}
    shapes = MATMUL_SHAPES_CPU if device.type == "cpu" else MATMUL_SHAPES_GPU
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        out[f"matmul {m}x{k} @ {k}x{n}"] = best_rate(partial(operator.matmul, a, b), 2.0 * m * k * n, device, seconds)
    bsz, cin, h, w, cout = CONV_PROBE
    x = torch.randn(bsz, cin, h, w, device=device, dtype=dtype)
    weight = torch.randn(cout, cin, 3, 3, device=device, dtype=dtype)
    conv_flops = 2.0 * bsz * cout * h * w * cin * 9
    out[f"conv 3x3 {cin}->{cout} on {bsz}x{h}x{w}"] = best_rate(
        lambda: F.conv2d(x, weight, padding=1), conv_flops, device, seconds
    )
    return out


def measure_bandwidth(device: torch.device, seconds: float = 0.2) -> float:
    """Bytes read plus written per second by a copy of 256 MiB (far beyond the caches)."""
    src = torch.empty(64 * 2**20, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return best_rate(lambda: dst.copy_(src), 2.0 * src.nbytes, device, seconds)


def measure_op_cost(device: torch.device, n: int = 2000) -> float:
    """Seconds of one trivial dispatched operation (an in-place add on one element); the best of 5."""
    x = torch.zeros(1, device=device)
    return min(time_steps(lambda: x.add_(1.0), n, device) for _ in range(5))


# --- what the machine says it is: flags, clocks, caches (every source injectable, for tests) -----------

SYS_CPU = Path("/sys/devices/system/cpu")
# FLOP per cycle per core of AMX's bf16 tile multiply: TDPBF16PS multiplies a 16x32 bf16 tile by a 32x16
# one into 16x16 fp32 sums (8,192 multiply-adds, 16,384 FLOP) and issues once every 16 cycles on a core:
# 1,024 FLOP per cycle, Intel's "1024 BF16 operations per cycle" per core of a 4th Gen Xeon (Intel
# Architecture Day 2021, as quoted with this derivation in Wikipedia's "Advanced Matrix Extensions"; Intel's
# "64 FP32 operations per cycle" for AVX-512 beside it counts two FMA units' multiply-adds as 2 FLOP each,
# the same counting as every figure here). 512 multiply-adds per cycle, not 1,024.
AMX_BF16_FLOP_PER_CYCLE = 1024


@dataclass(frozen=True)
class CpuFacts:
    """What the CPU states about itself. `max_hz` is the highest clock it states (cpufreq's
    cpuinfo_max_freq, else lscpu's "CPU max MHz"); /proc/cpuinfo's "cpu MHz" is never used for it (in a
    VM that is the base clock, and a core runs faster), only quoted in words (`stated_mhz`)."""

    flags: frozenset[str]
    max_hz: float | None
    clock_source: str  # where max_hz was read, or why there is none
    stated_mhz: float | None  # /proc/cpuinfo's cpu MHz, for words only
    cpus: int  # CPUs this process may use
    caches: dict[str, int]  # "L1d", "L2", "L3": bytes of one instance (L2: per core; L3: shared)


def _max_freq_hz(root: Path) -> float | None:
    """The highest cpuinfo_max_freq (kHz) under root/cpu*/cpufreq/, in Hz; None where none is readable."""
    best = None
    for f in sorted(root.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        try:
            khz = float(f.read_text().strip())
        except (OSError, ValueError):
            continue
        if khz > 0:
            best = max(best or 0.0, khz * 1e3)
    return best


def _lscpu_text() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5, env={**os.environ, "LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout if out.returncode == 0 else ""


def _cache_bytes(text: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text)
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)] if m else None


def cache_sizes(root: Path = SYS_CPU / "cpu0" / "cache") -> dict[str, int]:
    """One instance of each data cache level of cpu0: {"L1d": ..., "L2": ..., "L3": ...} in bytes ({} unknown)."""
    out: dict[str, int] = {}
    for d in sorted(root.glob("index[0-9]*")):
        try:
            level, kind = (d / "level").read_text().strip(), (d / "type").read_text().strip()
            size = _cache_bytes((d / "size").read_text())
        except OSError:
            continue
        if size and kind in ("Data", "Unified"):
            out[f"L{level}" + ("d" if kind == "Data" else "")] = size
    return out


def cpu_facts(
    cpuinfo: str | None = None,
    cpufreq: Path = SYS_CPU,
    lscpu: str | None = None,
    cpus: int | None = None,
    caches: dict[str, int] | None = None,
) -> CpuFacts:
    """The CPU's flags, highest stated clock and caches. Each source may be given (a test's fake text
    or folder); by default /proc/cpuinfo, /sys/devices/system/cpu and the `lscpu` command are read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", cpuinfo, re.M)
    flags = frozenset(m.group(1).split()) if m else frozenset()
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    hz, source = _max_freq_hz(Path(cpufreq)), "cpufreq's cpuinfo_max_freq"
    if hz is None:
        found = re.search(r"^CPU max MHz:\s*([\d.]+)", _lscpu_text() if lscpu is None else lscpu, re.M)
        hz, source = (
            (float(found.group(1)) * 1e6, "lscpu's CPU max MHz")
            if found and float(found.group(1)) > 0
            else (None, "neither cpufreq's cpuinfo_max_freq nor lscpu's CPU max MHz is readable here")
        )
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return CpuFacts(
        flags, hz, source, float(mhz.group(1)) if mhz else None, cpus, cache_sizes() if caches is None else caches
    )


def flop_per_cycle(dtype: torch.dtype, flags: frozenset[str]) -> tuple[tuple[float, float] | None, str]:
    """(low, high) FLOP per cycle per core for `dtype` from the CPU's flags, and how, in words. fp32:
    lanes x 2 (a fused multiply-add) x 1 or 2 FMA units (the assumption: no file says how many a core
    issues per cycle). bf16: AMX tiles where amx_bf16 and amx_tile are present (AMX_BF16_FLOP_PER_CYCLE),
    else AVX512_BF16's dot product (vdpbf16ps: two bf16 products into each fp32 lane, 2x fp32's rate),
    else the fp32 rate (bf16 converted to fp32 and computed there)."""
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "fma" in flags else 4
    isa = {16: "AVX-512", 8: "AVX2", 4: "SSE"}[lanes]
    fp32 = (
        (lanes * 2 * 1, lanes * 2 * 2),
        f"{lanes} fp32 lanes ({isa}) x 2 (FMA) x 1 or 2 FMA units per core (assumed: not stated by the CPU)",
    )
    if dtype == torch.float32:
        return fp32
    if dtype == torch.bfloat16:
        if {"amx_bf16", "amx_tile"} <= flags:
            return (
                (AMX_BF16_FLOP_PER_CYCLE, AMX_BF16_FLOP_PER_CYCLE),
                f"AMX tiles: {AMX_BF16_FLOP_PER_CYCLE} bf16 FLOP per cycle per core (TDPBF16PS: 16x16x32 "
                f"multiply-adds every 16 cycles; Intel's figure for 4th Gen Xeon)",
            )
        if "avx512_bf16" in flags:
            return (
                (lanes * 4 * 1, lanes * 4 * 2),
                f"AVX512_BF16 dot products: {lanes} fp32 lanes x 2 bf16 products x 2 (FMA) x 1 or 2 units "
                f"per core (2x the fp32 rate; the unit count assumed)",
            )
        return fp32[0], f"no bf16 instructions: bf16 computed at the fp32 rate, {fp32[1]}"
    return None, f"not derived for {str(dtype).removeprefix('torch.')}"


def theoretical_cpu(dtype: torch.dtype, facts: CpuFacts | None = None, threads: int | None = None) -> Theoretical:
    """cores x the highest clock the CPU states x FLOP per cycle per core (`flop_per_cycle`), for the
    cores the step's `threads` can use (default: torch's thread count now). Where no clock is stated,
    no figure: the words say the clock is unknown and give the FLOP per cycle."""
    facts = facts or cpu_facts()
    cores = max(1, min(threads or torch.get_num_threads(), facts.cpus))
    per_cycle, how = flop_per_cycle(dtype, facts.flags)
    if per_cycle is None:
        return Theoretical(None, how)
    lo, hi = per_cycle
    span = f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"
    if facts.max_hz is None:
        base = (
            f"; /proc/cpuinfo's cpu MHz ({facts.stated_mhz:,.0f}) is not used: in a VM it is the base clock"
            if facts.stated_mhz
            else ""
        )
        return Theoretical(
            None,
            f"not derived: the clock is unknown ({facts.clock_source}{base}); "
            f"{cores} core{'s' * (cores != 1)} x {span} FLOP per cycle: {how}",
            cores,
            per_cycle,
            None,
        )
    hz = facts.max_hz
    return Theoretical(
        (cores * hz * lo, cores * hz * hi),
        f"{cores} core{'s' * (cores != 1)} (the step's threads) x {hz / 1e9:.2f} GHz ({facts.clock_source}) x {how}",
        cores,
        per_cycle,
        hz,
    )


def theoretical(device: torch.device, dtype: torch.dtype, threads: int | None = None) -> Theoretical:
    if device.type == "cpu":
        return theoretical_cpu(dtype, threads=threads)
    return Theoretical(None, f"not derived for {device.type}: torch does not expose its clock and units per SM")


# --- bandwidth at the size of what a step touches ------------------------------------------------------

FAR_BEYOND_BYTES = 512 * 2**20  # a copy's source and destination together: far beyond any cache here


def probe_sizes(caches: dict[str, int], threads: int) -> dict[str, int]:
    """Working sets (source + destination of a copy) per level: half of the L2 of each thread's core,
    half of the L3, and far beyond; a level the machine does not state is not probed."""
    sizes = {}
    if caches.get("L2"):
        sizes["L2"] = caches["L2"] // 2 * threads
    if caches.get("L3") and caches["L3"] > sizes.get("L2", 0) * 2:
        sizes["L3"] = caches["L3"] // 2
    sizes["DRAM"] = FAR_BEYOND_BYTES
    return sizes


def measure_bandwidths(
    device: torch.device,
    sizes: dict[str, int],
    repeats: int = 3,
    op_cost_s: float | None = None,
    moved_bytes: int = 16 * 2**20,
) -> dict[str, float]:
    """Bytes read plus written per second by a copy whose source and destination together are each
    size: the best of `repeats` timings (core/timing.time_steps) of about `moved_bytes` each, each copy less one
    dispatched operation's cost (`op_cost_s`, measured if not given), which would otherwise dominate a small copy.
    Few and short timings: a bench measures them beside its cells (on 2 threads of a busy machine, each small copy
    can wait a scheduler's time slice at its barrier)."""
    op = measure_op_cost(device) if op_cost_s is None else op_cost_s
    out = {}
    for level, size in sizes.items():
        src = torch.empty(max(1, size // 8), dtype=torch.float32, device=device).fill_(1.0)
        dst = torch.empty_like(src)
        moved = 2.0 * src.nbytes
        n = max(1, min(10_000, int(moved_bytes // moved)))  # about moved_bytes per timing
        dst.copy_(src)
        best = min(time_steps(partial(dst.copy_, src), n, device) for _ in range(repeats))
        out[level] = moved / max(best - op, best * 0.1, 1e-9)
    return out


def working_set_bandwidths(
    device: torch.device,
    threads: int,
    dram_bytes_per_s: float | None = None,
    op_cost_s: float | None = None,
) -> tuple[dict[str, int], dict[str, float]]:
    """The probes' working sets and bandwidths for `device` on `threads`: on a CPU the L2- and L3-sized copies
    (`probe_sizes`), and DRAM's (given, as measure_ceilings measured it, or measured here); on a GPU its memory."""
    sizes = probe_sizes(cpu_facts().caches, threads) if device.type == "cpu" else {"DRAM": FAR_BEYOND_BYTES}
    todo = {k: v for k, v in sizes.items() if not (k == "DRAM" and dram_bytes_per_s)}
    rates = measure_bandwidths(device, todo, op_cost_s=op_cost_s) if todo else {}
    if dram_bytes_per_s:
        rates["DRAM"] = dram_bytes_per_s
    return sizes, rates


def bandwidth_for(
    working_set_bytes: int, sizes: dict[str, int], bandwidths: dict[str, float]
) -> tuple[str, float, str]:
    """The probe whose working set holds the step's: (level, bytes/s, why, in words)."""
    for level in sorted(sizes, key=sizes.__getitem__):
        if working_set_bytes <= sizes[level] and level in bandwidths:
            fits = (
                f"the step's working set ({working_set_bytes / 2**20:.2f} MiB) fits in the {level}-sized probe's "
                f"{sizes[level] / 2**20:.2f} MiB"
                if level != "DRAM"
                else f"the step's working set ({working_set_bytes / 2**20:.1f} MiB) is beyond the caches"
            )
            return level, bandwidths[level], fits
    return (
        "DRAM",
        bandwidths["DRAM"],
        (f"the step's working set ({working_set_bytes / 2**20:.1f} MiB) is beyond every probe: DRAM bandwidth"),
    )


def measure_ceilings(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.1) -> Ceilings:
    """The device's ceilings in `dtype` (about 1-2 s on a CPU)."""
    probes = compute_probes(device, dtype, seconds)
    best = max(probes, key=probes.__getitem__)
    threads = torch.get_num_threads() if device.type == "cpu" else None
    return Ceilings(
        device.type,
        str(dtype).removeprefix("torch."),
        probes[best],
        best,
        measure_bandwidth(device),
        measure_op_cost(device),
        theoretical(device, dtype, threads).checked(probes[best]),
        threads=threads,
    )


# --- a step's cost and floors -----------------------------------------------------------------------


@dataclass(frozen=True)
class StepCost:
    """What one training step does: FLOPs (counted exactly), bytes its operations read and write
    (each operation's inputs and outputs once: no cache reuse, an upper bound on DRAM traffic), and
    operations dispatched (each at least one kernel on a GPU); `conv_flops`: those of the FLOPs in
    convolutions (None: not split, as in a file from before they were)."""

    flops: int
    bytes: int
    ops: int
    conv_flops: int | None = None


class _OpCounter(TorchDispatchMode):
    """Counts the operations dispatched, and the bytes they move: each operation's tensor inputs read
    once and its new outputs written once (an in-place result is its input; a view moves nothing).
    `storages`: the distinct memory they touch, every storage read or written once, by address (bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.bytes = 0
        self.storages: dict[int, int] = {}

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        inputs, outputs = _tensors((args, kwargs)), _tensors(out)
        for t in inputs + outputs:
            s = t.untyped_storage()
            self.storages[s.data_ptr()] = max(self.storages.get(s.data_ptr(), 0), s.nbytes())
        if not getattr(func, "is_view", False):
            seen = {t.untyped_storage().data_ptr() for t in inputs}
            written = [t for t in outputs if t.untyped_storage().data_ptr() not in seen]
            self.bytes += sum(t.nbytes for t in inputs) + sum(t.nbytes for t in written)
        return out


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def count_call(fn: Callable[[], Any]) -> StepCost:
    """Count one call of `fn`: torch's FLOP counter (those in convolutions apart), every dispatched operation
    and the bytes it reads and writes once."""
    counter = _OpCounter()
    with FlopCounterMode(display=False) as flops, counter:
        fn()
    return StepCost(int(flops.get_total_flops()), counter.bytes, counter.ops, conv_flops_of(flops))


def step_cost(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer) -> StepCost:
    """Count one training step (forward, loss, backward, optimizer step) of `model` on (x, y). The
    model's weights and the optimizer's state change as in a real step: count on a copy if they matter."""
    optimizer.zero_grad(set_to_none=True)

    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    return count_call(step)


def conv_flops_of(counter: FlopCounterMode) -> int:
    """The FLOPs a FlopCounterMode counted in convolutions (forward and backward)."""
    by_op = counter.get_flop_counts().get("Global", {})
    return int(sum(n for op, n in by_op.items() if "convolution" in str(op)))


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one evaluation forward pass of `model` on x (eval mode, no gradients), counted by the
    same torch counter as step_cost. Leaves the model in eval mode."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(x)
    return int(flops.get_total_flops())


def count_step(
    model_name: str,
    shape: DataShape,
    batch_size: int,
    optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None,
) -> StepCost:
    """One training step of a fresh `model_name` at `batch_size`, counted on the CPU (the operations and
    bytes of a step are the device's too, kernel for operation). `optimizer(model)`: the one to step
    (default: the notebook's SGD; the speedrun passes its Adam)."""
    from mnistlab.training.loop import make_optimizer
    from mnistlab.training.models import create_model

    with torch.random.fork_rng(devices=[]):  # a count must not move the caller's random stream
        torch.manual_seed(0)
        model = create_model(model_name, shape)
        x = torch.randn(batch_size, *shape.sample)
        y = torch.randint(0, shape.classes, (batch_size,))
        opt = optimizer(model) if optimizer else make_optimizer(model, lr=0.01, momentum=0.5)
        return step_cost(model, x, y, opt)


def count_forward(model_name: str, shape: DataShape, batch_size: int) -> int:
    """FLOPs of one evaluation forward pass of a fresh `model_name` at `batch_size`, on the CPU."""
    from mnistlab.training.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return forward_flops(create_model(model_name, shape), torch.randn(batch_size, *shape.sample))


@dataclass(frozen=True)
class Floors:
    """The least time a step could take on a device, three ways, and what bounds it."""

    compute_s: float
    memory_s: float
    overhead_s: float
    measured_s: float
    spread: float  # the measurement's relative spread, (max - min) / median

    @classmethod
    def of(cls, cost: StepCost, ceilings: Ceilings, measured_s: float, spread: float = 0.0) -> Floors:
        return cls(
            cost.flops / ceilings.compute_flops_per_s,
            cost.bytes / ceilings.bandwidth_bytes_per_s,
            cost.ops * ceilings.op_cost_s,
            measured_s,
            spread,
        )

    def floor(self, name: str) -> float:
        return {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}[name]

    @property
    def ranked(self) -> list[str]:
        return sorted(FLOORS, key=self.floor, reverse=True)

    @property
    def bound(self) -> str:
        """'compute', 'memory' or 'overhead'; 'between X and Y' when the two largest floors are within
        FLOOR_TOLERANCE of each other. A function of the floors alone: two cells with equal floors get the same
        label, however differently their repeats scattered (`spread` is kept for the words, not the label)."""
        first, second = self.ranked[:2]
        if self.floor(first) <= (1 + FLOOR_TOLERANCE) * self.floor(second):
            return f"between {first} and {second}"
        return first

    @property
    def closeness(self) -> float:
        """The largest floor as a share of the measured time: how close the step comes to its bound."""
        return self.floor(self.ranked[0]) / self.measured_s if self.measured_s > 0 else 0.0

    def words(self) -> str:
        top = self.ranked[0]
        what = f"bound {self.bound}" if self.bound.startswith("between") else f"{self.bound}-bound"
        return (
            f"{what}: its floors are {self.compute_s * 1e3:.3f} ms of arithmetic, {self.memory_s * 1e3:.3f} ms "
            f"of memory traffic and {self.overhead_s * 1e3:.3f} ms of per-operation costs; the largest "
            f"({top}) is {self.closeness:.0%} of the {self.measured_s * 1e3:.2f} ms measured"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bound": self.bound, "closeness": self.closeness}

"""Ceilings and floors: the most a device can do, and the least time a training step could take.

Ceilings, per device and dtype, measured as ceilings:
- compute: the best FLOP/s over several matmul shapes (square, and the shapes the built-in models run)
  and a 3x3 convolution, each repeated; a step seen running faster raises it (`raised_to`), so that no
  utilisation is ever above 100% of it;
- memory bandwidth: a copy of a tensor far larger than the caches (bytes read plus bytes written);
- per-operation cost: one dispatched operation on a one-element tensor (Python, dispatcher, a kernel
  launch on a GPU);
- and, beside the measured compute ceiling, a theoretical one derived from what the machine says it is
  (cores x clock x FLOPs per cycle), with the assumption it needs said in words.

A step's floors: its FLOPs over the compute ceiling, its bytes over the bandwidth, its operations times
the per-operation cost. The largest floor is what bounds the step; when the next one is within the
measurement's spread of it, the step is "between" the two, and no single bound is claimed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from mnistlab.data.datasets import DataShape
from mnistlab.core.timing import best_rate, indistinct, time_steps

FLOORS = ("compute", "memory", "overhead")
FLOOR_WORDS = {"compute": "arithmetic (FLOPs at the compute ceiling)",
               "memory": "memory traffic (bytes at the measured bandwidth)",
               "overhead": "per-operation costs (operations dispatched at the measured cost of a trivial one)"}


@dataclass(frozen=True)
class Theoretical:
    flops_per_s: tuple[float, float] | None  # (low, high): the range the assumption spans; None: not derived
    derivation: str  # one line: how, and what had to be assumed

    def to_dict(self) -> dict[str, Any]:
        return {"flops_per_s": list(self.flops_per_s) if self.flops_per_s else None, "derivation": self.derivation}


@dataclass(frozen=True)
class Ceilings:
    device: str
    dtype: str
    compute_flops_per_s: float  # best measured (matmul shapes, convolution), or what a step was seen to reach
    best_shape: str  # which measurement gave it
    bandwidth_bytes_per_s: float
    op_cost_s: float  # one trivial dispatched operation
    theoretical: Theoretical
    raised_to: float | None = None  # set when a step ran faster than every probe: the ceiling is what was seen

    def raised(self, seen_flops_per_s: float) -> Ceilings:
        """The same ceilings, with compute raised to what a step reached if it reached more."""
        if seen_flops_per_s <= self.compute_flops_per_s:
            return self
        return Ceilings(self.device, self.dtype, seen_flops_per_s, "a training step of this run",
                        self.bandwidth_bytes_per_s, self.op_cost_s, self.theoretical, seen_flops_per_s)

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
        out[f"matmul {m}x{k} @ {k}x{n}"] = best_rate(lambda: a @ b, 2.0 * m * k * n, device, seconds)
    bsz, cin, h, w, cout = CONV_PROBE
    x = torch.randn(bsz, cin, h, w, device=device, dtype=dtype)
    weight = torch.randn(cout, cin, 3, 3, device=device, dtype=dtype)
    conv_flops = 2.0 * bsz * cout * h * w * cin * 9
    out[f"conv 3x3 {cin}->{cout} on {bsz}x{h}x{w}"] = best_rate(lambda: F.conv2d(x, weight, padding=1), conv_flops,
                                                                 device, seconds)
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


def _cpuinfo() -> tuple[set[str], float | None]:
    """The CPU's flags and its clock in Hz, from /proc/cpuinfo (MHz, else BogoMIPS / 2)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), None
    flags = set(re.search(r"^flags\s*:\s*(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    bogo = re.search(r"^bogomips\s*:\s*([\d.]+)", text, re.M | re.I)
    hz = float(mhz.group(1)) * 1e6 if mhz else (float(bogo.group(1)) / 2 * 1e6 if bogo else None)
    return flags, hz


def theoretical_cpu(dtype: torch.dtype) -> Theoretical:
    """cores x clock x fp32 lanes x 2 (a fused multiply-add is two FLOPs) x FMA units per core (1 or 2:
    the assumption, since no file says how many 512- or 256-bit FMAs a core issues per cycle)."""
    if dtype != torch.float32:
        return Theoretical(None, f"not derived for {str(dtype).removeprefix('torch.')}: its units (AMX tiles, "
                                 f"bf16 dot products) are not described in a form this can read")
    flags, hz = _cpuinfo()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "fma" in flags else 4
    if hz is None:
        return Theoretical(None, "not derived: the clock is not readable here")
    low, high = cores * hz * lanes * 2 * 1, cores * hz * lanes * 2 * 2
    return Theoretical((low, high), f"{cores} cores x {hz / 1e9:.2f} GHz x {lanes} fp32 lanes "
                                    f"({'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}) x 2 (FMA) "
                                    f"x 1 or 2 FMA units per core (assumed: not stated by the CPU)")


def theoretical(device: torch.device, dtype: torch.dtype) -> Theoretical:
    if device.type == "cpu":
        return theoretical_cpu(dtype)
    return Theoretical(None, f"not derived for {device.type}: torch does not expose its clock and units per SM")


def measure_ceilings(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 0.1) -> Ceilings:
    """The device's ceilings in `dtype` (about 1-2 s on a CPU)."""
    probes = compute_probes(device, dtype, seconds)
    best = max(probes, key=probes.__getitem__)
    return Ceilings(device.type, str(dtype).removeprefix("torch."), probes[best], best, measure_bandwidth(device),
                    measure_op_cost(device), theoretical(device, dtype))


# --- a step's cost and floors -----------------------------------------------------------------------

@dataclass(frozen=True)
class StepCost:
    """What one training step does: FLOPs (counted exactly), bytes its operations read and write
    (each operation's inputs and outputs once: no cache reuse, an upper bound on DRAM traffic), and
    operations dispatched (each at least one kernel on a GPU)."""

    flops: int
    bytes: int
    ops: int


class _OpCounter(TorchDispatchMode):
    """Counts the operations dispatched, and the bytes they move: each operation's tensor inputs read
    once and its new outputs written once (an in-place result is its input; a view moves nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        out = func(*args, **(kwargs or {}))
        self.ops += 1
        if not getattr(func, "is_view", False):
            inputs = _tensors((args, kwargs))
            seen = {t.untyped_storage().data_ptr() for t in inputs}
            written = [t for t in _tensors(out) if t.untyped_storage().data_ptr() not in seen]
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


def step_cost(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
              optimizer: torch.optim.Optimizer) -> StepCost:
    """Count one training step (forward, loss, backward, optimizer step) of `model` on (x, y). The
    model's weights and the optimizer's state change as in a real step: count on a copy if they matter."""
    counter = _OpCounter()
    optimizer.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as flops, counter:
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return StepCost(int(flops.get_total_flops()), counter.bytes, counter.ops)


def forward_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one evaluation forward pass of `model` on x (eval mode, no gradients), counted by the
    same torch counter as step_cost. Leaves the model in eval mode."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(x)
    return int(flops.get_total_flops())


def count_step(model_name: str, shape: DataShape, batch_size: int,
               optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer] | None = None) -> StepCost:
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
        return cls(cost.flops / ceilings.compute_flops_per_s, cost.bytes / ceilings.bandwidth_bytes_per_s,
                   cost.ops * ceilings.op_cost_s, measured_s, spread)

    def floor(self, name: str) -> float:
        return {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}[name]

    @property
    def ranked(self) -> list[str]:
        return sorted(FLOORS, key=self.floor, reverse=True)

    @property
    def bound(self) -> str:
        """'compute', 'memory' or 'overhead'; 'between X and Y' when the two largest floors are within the
        measurement's spread of each other (the noise could order them either way)."""
        first, second = self.ranked[:2]
        if indistinct(self.floor(first), self.floor(second), self.spread):
            return f"between {first} and {second}"
        return first

    @property
    def closeness(self) -> float:
        """The largest floor as a share of the measured time: how close the step comes to its bound."""
        return self.floor(self.ranked[0]) / self.measured_s if self.measured_s > 0 else 0.0

    def words(self) -> str:
        top = self.ranked[0]
        what = f"bound {self.bound}" if self.bound.startswith("between") else f"{self.bound}-bound"
        return (f"{what}: its floors are {self.compute_s * 1e3:.3f} ms of arithmetic, {self.memory_s * 1e3:.3f} ms "
                f"of memory traffic and {self.overhead_s * 1e3:.3f} ms of per-operation costs; the largest "
                f"({top}) is {self.closeness:.0%} of the {self.measured_s * 1e3:.2f} ms measured")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bound": self.bound, "closeness": self.closeness}

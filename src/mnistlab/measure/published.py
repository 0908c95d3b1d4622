"""Published GPU times, and the prediction model (measure/prediction.py) checked against them.

No GPU has been lent to this project, but public, reproducible MNIST runs on GPUs exist. A whole run is a
few kinds of work repeated (a training step, a short last step, a test batch, building the model), so its
lower bound is the sum over those parts of each part's bound, where each part's bound is the one that answers
Q6/Q9: the largest of its launch, bandwidth and compute floors (`Prediction.of`). The parts are counted here,
on the CPU (the operations an eager step dispatches are the GPU's too, kernel for operation). A published time
below the predicted lower bound would prove the model wrong; one far above it says what the floors leave out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch.utils.flop_counter import FlopCounterMode

from mnistlab.measure.ceilings import StepCost, _OpCounter, conv_flops_of
from mnistlab.measure.gpus import DISPATCH_COST_S, GPUS, Gpu
from mnistlab.measure.prediction import FLOORS, Prediction


@dataclass(frozen=True)
class PublishedRun:
    """A public, reproducible time on a GPU, with what its timer covers."""

    name: str
    gpu: str  # a row of measure/gpus.GPUS
    seconds: float  # the published time (a mean, as published)
    spread: str  # as published
    accuracy: str
    timed: str  # what the published timer covers
    source: str
    url: str


PUBLISHED = {r.name: r for r in (
    PublishedRun("train_mnist_fast", "GTX 1660 Ti", 0.762, "mean 762 ms, std 24.9 ms over 7 runs (%%timeit)",
                 "99.04% mean test accuracy over 30 runs (std 0.066)",
                 "main(): build the CNN and move it to the GPU, Adam and OneCycleLR, one epoch of 235 steps at batch "
                 "256 on data already on the GPU, then one test pass (5 batches of 2,000, two .item() each)",
                 "tuomaso/train_mnist_fast, 8_Final_00s76.ipynb (PyTorch 1.8, a laptop's GeForce GTX 1660 Ti)",
                 "https://github.com/tuomaso/train_mnist_fast"),
    PublishedRun("train_mnist_fast step 7", "GTX 1660 Ti", 1.74, "mean 1.74 s, std 18.3 ms over 7 runs (%%timeit)",
                 "99.02-99.18% after 2 epochs (8 runs printed)",
                 "main(): build the CNN, Adadelta and OneCycleLR, two epochs of 235 steps at batch 256 on data on the "
                 "GPU, each followed by a test pass (10 batches of 1,000, two .item() each) and a print",
                 "tuomaso/train_mnist_fast, 7_Smaller_NN2_01s74.ipynb (the same laptop)",
                 "https://github.com/tuomaso/train_mnist_fast"),
)}


@dataclass(frozen=True)
class Work:
    """What one call dispatches, counted on the CPU: FLOPs (those in convolutions apart), bytes, operations."""

    flops: int
    conv_flops: int
    bytes: int
    ops: int

    @property
    def cost(self) -> StepCost:
        return StepCost(self.flops, self.bytes, self.ops, self.conv_flops)


def count_call(fn: Callable[[], Any]) -> Work:
    """Count one call of `fn` with the counters of measure/ceilings.step_cost (torch's FLOP counter, every
    dispatched operation and the bytes it reads and writes once)."""
    counter = _OpCounter()
    with FlopCounterMode(display=False) as flops, counter:
        fn()
    return Work(int(flops.get_total_flops()), conv_flops_of(flops), counter.bytes, counter.ops)


@dataclass(frozen=True)
class RunPart:
    what: str
    times: int  # how often the run does it
    work: Work


@dataclass(frozen=True)
class RunPrediction:
    """A whole run's lower bound on `gpu`: each part's bound (the largest of its floors) times its count, summed."""

    gpu: Gpu
    parts: tuple[RunPart, ...]
    dispatch_cost_s: float = DISPATCH_COST_S
    dtype: str = "float32"

    def prediction(self, part: RunPart) -> Prediction:
        return Prediction.of(part.work.cost, self.gpu, self.dtype, self.dispatch_cost_s, part.work.conv_flops)

    @property
    def bound_s(self) -> float:
        return sum(p.times * self.prediction(p).bound_s for p in self.parts)

    def floor_s(self, name: str) -> float:
        """One floor summed over the run (launch, bandwidth or compute)."""
        return sum(p.times * self.prediction(p).floor(name) for p in self.parts)

    @property
    def no_overlap_s(self) -> float:
        """Every floor of every part added: what the run would take if nothing overlapped (not a bound)."""
        return sum(self.floor_s(f) for f in FLOORS)

    @property
    def ops(self) -> int:
        return sum(p.times * p.work.ops for p in self.parts)

    @property
    def binds(self) -> str:
        """The floor that makes most of the bound."""
        share = {f: sum(p.times * self.prediction(p).floor(f) for p in self.parts if self.prediction(p).binds == f)
                 for f in FLOORS}
        return max(FLOORS, key=share.__getitem__)

    def holds(self, published_s: float) -> bool:
        """The model is not contradicted: the published time is at or above the predicted lower bound."""
        return published_s >= self.bound_s


def sweep(gpu: Gpu, parts: Sequence[RunPart], costs_s: Sequence[float], dtype: str = "float32") -> list[RunPrediction]:
    """The run's prediction at each assumed dispatch cost (the one assumption that is not a datasheet's)."""
    return [RunPrediction(gpu, tuple(parts), c, dtype) for c in costs_s]


def published_gpu(run: PublishedRun) -> Gpu:
    return GPUS[run.gpu]

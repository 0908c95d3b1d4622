"""Published GPU times, and the prediction model (measure/prediction.py) checked against them.

No GPU has been lent to this project, but public, reproducible MNIST runs on GPUs exist. A whole run is a
few kinds of work repeated (a training step, a short last step, a test batch, building the model), so its
lower bound is the sum over those parts of each part's bound, where each part's bound is the one that answers
Q6/Q9: the largest of its launch, bandwidth and compute floors (`Prediction.of`). The parts are counted here,
on the CPU (the operations an eager step dispatches are the GPU's too, kernel for operation). A published time
below the predicted lower bound would prove the model wrong; one far above it says what the floors leave out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.datasets import DATASETS
from mnistlab.measure.ceilings import StepCost, count_call
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


PUBLISHED = {
    r.name: r
    for r in (
        PublishedRun(
            "train_mnist_fast",
            "GTX 1660 Ti",
            0.762,
            "mean 762 ms, std 24.9 ms over 7 runs (%%timeit)",
            "99.04% mean test accuracy over 30 runs (std 0.066)",
            "main(): build the CNN and move it to the GPU, Adam and OneCycleLR, one epoch of 235 steps at batch "
            "256 on data already on the GPU, then one test pass (5 batches of 2,000, two .item() each)",
            "tuomaso/train_mnist_fast, 8_Final_00s76.ipynb (PyTorch 1.8, a laptop's GeForce GTX 1660 Ti)",
            "https://github.com/tuomaso/train_mnist_fast",
        ),
        PublishedRun(
            "train_mnist_fast step 7",
            "GTX 1660 Ti",
            1.74,
            "mean 1.74 s, std 18.3 ms over 7 runs (%%timeit)",
            "99.02-99.18% after 2 epochs (8 runs printed)",
            "main(): build the CNN, Adadelta and OneCycleLR, two epochs of 235 steps at batch 256 on data on the "
            "GPU, each followed by a test pass (10 batches of 1,000, two .item() each) and a print",
            "tuomaso/train_mnist_fast, 7_Smaller_NN2_01s74.ipynb (the same laptop)",
            "https://github.com/tuomaso/train_mnist_fast",
        ),
    )
}


@dataclass(frozen=True)
class RunPart:
    what: str
    times: int  # how often the run does it
    work: StepCost  # what one call dispatches, counted on the CPU (ceilings.count_call)


@dataclass(frozen=True)
class RunPrediction:
    """A whole run's lower bound on `gpu`: each part's bound (the largest of its floors) times its count, summed."""

    gpu: Gpu
    parts: tuple[RunPart, ...]
    dispatch_cost_s: float = DISPATCH_COST_S
    dtype: str = "float32"

    def prediction(self, part: RunPart) -> Prediction:
        return Prediction.of(part.work, self.gpu, self.dtype, self.dispatch_cost_s)

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
        share = {
            f: sum(p.times * self.prediction(p).floor(f) for p in self.parts if self.prediction(p).binds == f)
            for f in FLOORS
        }
        return max(FLOORS, key=share.__getitem__)

    def holds(self, published_s: float) -> bool:
        """The model is not contradicted: the published time is at or above the predicted lower bound."""
        return published_s >= self.bound_s


def sweep(gpu: Gpu, parts: Sequence[RunPart], costs_s: Sequence[float], dtype: str = "float32") -> list[RunPrediction]:
    """The run's prediction at each assumed dispatch cost (the one assumption that is not a datasheet's)."""
    return [RunPrediction(gpu, tuple(parts), c, dtype) for c in costs_s]


# --- the published runs' own code, counted -----------------------------------------------------------------

TRAIN, BATCH = 60_000, 256  # train_mnist_fast: the full MNIST training set at batch 256
MNIST = DATASETS["mnist"].shape  # the published runs' data


class FinalNet(nn.Module):
    """8_Final_00s76.ipynb's Net: conv 5x5 24, pool, ReLU, conv 3x3 32, pool, ReLU, dense 800-256-10, log-softmax
    (benchmarks/speedrun_ladder.py's AnchorNet, with its pooling before the ReLU, as the notebook has it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 24, 5, 1), nn.Conv2d(24, 32, 3, 1)
        self.fc1, self.fc2 = nn.Linear(800, 256), nn.Linear(256, MNIST.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.log_softmax(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))), dim=1)


class Step7Net(nn.Module):
    """7_Smaller_NN2_01s74.ipynb's Net: conv 3x3 24, ReLU, pool, conv 3x3 32, ReLU, pool, dense 800-128-10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 24, 3, 1), nn.Conv2d(24, 32, 3, 1)
        self.fc1, self.fc2 = nn.Linear(800, 128), nn.Linear(128, MNIST.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))), dim=1)


def _linear(small: StepCost, larger: StepCost, b0: int, b1: int, batch: int) -> StepCost:
    """A call's work at `batch` from its counts at two small batches: FLOPs and bytes grow linearly with the
    batch (every operation of these runs is per sample, but for the weights' and the optimizer's, which do not
    grow), and the operations are the same at any batch (tests/test_prediction.py checks it against a count
    at the run's own batches)."""

    def at(a: int, b: int) -> int:
        return a + (b - a) * (batch - b0) // (b1 - b0)

    if small.ops != larger.ops:
        raise ValueError("a call dispatched different operations at two batches: it cannot be extrapolated")
    return StepCost(
        at(small.flops, larger.flops),
        at(small.bytes, larger.bytes),
        small.ops,
        at(small.conv_flops or 0, larger.conv_flops or 0),  # count_call always splits them
    )


def count_run(
    net: type[nn.Module],
    optimizer: Callable[[list], torch.optim.Optimizer],
    epochs: int,
    test_batch: int,
    exact: bool = False,
) -> list[RunPart]:
    """The parts of one published main(), counted here on the CPU: the model built and copied to the GPU, per
    epoch the first step (the optimizer creates its state), the steady steps, the short last step and a test
    pass. `exact`: each part counted at its own batch (seconds); else at batches 2 and 4 and extrapolated
    (`_linear`: the same figures, in a fraction of the time, for a report)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        steps = -(-TRAIN // BATCH)
        last = TRAIN - (steps - 1) * BATCH
        built = count_call(net)
        model = net()
        params = list(model.parameters())
        copy = sum(2 * p.nbytes for p in params)  # .to(device): each parameter read on the host, written on the GPU
        opt = optimizer(params)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps * epochs, cycle_momentum=False
        )
        data, labels = torch.randn(2 * BATCH, *MNIST.sample), torch.randint(0, MNIST.classes, (2 * BATCH,))

        def step(i: int, size: int) -> Callable[[], None]:  # the notebook's loop body, its slicing included
            def run() -> None:
                x, y = data[i * size : (i + 1) * size], labels[i * size : (i + 1) * size]
                opt.zero_grad(set_to_none=False)
                F.nll_loss(model(x), y).backward()
                opt.step()
                sched.step()

            return run

        def test_pass(size: int) -> Callable[[], None]:
            test_x, test_y = torch.randn(size, *MNIST.sample), torch.randint(0, MNIST.classes, (size,))

            def run() -> None:
                model.eval()
                with torch.no_grad():
                    x, y = test_x[0:size], test_y[0:size]
                    out = model(x)
                    F.nll_loss(out, y, reduction="sum").item()
                    pred = out.argmax(dim=1, keepdim=True)
                    pred.eq(y.view_as(pred)).sum().item()
                model.train()

            return run

        def counted(call: Callable[[int], Callable[[], None]], batch: int) -> StepCost:
            if exact:
                return count_call(call(batch))
            return _linear(count_call(call(2)), count_call(call(4)), 2, 4, batch)

        # the first step creates the optimizer's state (work that does not grow with the batch): counted first
        if exact:
            first = count_call(step(0, BATCH))
            steady = count_call(step(1, BATCH))
        else:
            first_small, steady_small = count_call(step(0, 2)), count_call(step(1, 2))
            steady = counted(lambda b: step(1, b), BATCH)
            first = StepCost(
                *(
                    getattr(steady, f) + getattr(first_small, f) - getattr(steady_small, f)
                    for f in ("flops", "bytes", "ops", "conv_flops")
                )
            )
        short = counted(lambda b: step(0, b), last)
        tested = counted(test_pass, test_batch)
    return [
        RunPart(
            "model built on the host, copied to the GPU",
            1,
            replace(built, bytes=built.bytes + copy, ops=built.ops + len(params)),
        ),
        RunPart("first training step of an epoch (optimizer state created)", 1 if epochs == 1 else epochs, first),
        RunPart(f"training step at batch {BATCH}", (steps - 2) * epochs, steady),
        RunPart(f"last training step (batch {last})", epochs, short),
        RunPart(f"test batch of {test_batch}", (10_000 // test_batch) * epochs, tested),
    ]


def _final(exact: bool = False) -> list[RunPart]:
    return count_run(FinalNet, lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.7, 0.9), foreach=False), 1, 2000, exact)


def _step7(exact: bool = False) -> list[RunPart]:
    return count_run(Step7Net, lambda p: torch.optim.Adadelta(p, lr=4.0, foreach=False), 2, 1000, exact)


# each published run's main(), as its notebook wrote it (torch's for-loop Adam and Adadelta: PyTorch 1.8's were)
RUNS: dict[str, Callable[[bool], list[RunPart]]] = {"train_mnist_fast": _final, "train_mnist_fast step 7": _step7}
CHECK_COSTS_S = (2e-6, 5e-6, 10e-6)  # the dispatch costs the check is shown at: the assumed 5 us, and 2-10 us


@functools.cache
def published_check(name: str = "train_mnist_fast") -> tuple[PublishedRun, tuple[RunPrediction, ...]]:
    """A published run and its predicted lower bound at each of CHECK_COSTS_S (counted once per process)."""
    run = PUBLISHED[name]
    return run, tuple(sweep(GPUS[run.gpu], RUNS[name](False), CHECK_COSTS_S))

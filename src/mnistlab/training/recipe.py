"""A fast recipe trained from scratch, once per seed: the speedrun's training (measure/speedrun.py times it).

The recipe's steps run through the same machinery as every run's: training.levers.make_step builds the
step with the speed levers, training.loop.train_epoch runs the epochs (with the one-cycle schedule stepped
after each step), training.evaluation.evaluate scores the whole test set, and core/timing.py's Timer
times them. The warm-up (first-call costs: oneDNN/cuDNN kernel choice, torch.compile, CUDA graph capture)
is training.levers.warm_up's, timed apart and undone.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.core.timing import Timer
from mnistlab.data.datasets import DataShape, DatasetSpec
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import Levers, autocast, make_step, prepare_model, warm_up
from mnistlab.training.loop import train_epoch
from mnistlab.training.models import create_model

NO_LOG = 2**62  # train_epoch reads a step's loss every `log_every` steps: once per epoch here


@dataclass(frozen=True)
class Recipe:
    """What is trained: model, optimiser, schedule, batch, epochs. Levers are separate (`Levers`)."""

    model: str = "speednet"
    # chosen on a validation split (the last 10k training images), never on the test set (docs/speedrun.md)
    batch_size: int = 256
    epochs: int = 1
    max_lr: float = 0.03  # Adam, one-cycle: warm up to max_lr, then anneal to ~0
    pct_start: float = 0.25
    warmup_steps: int = 2  # untimed steps per seed, undone before the timed run
    label_smoothing: float = 0.1  # +0.12 points of validation accuracy at batch 256, for nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# the recipe's own levers per device: measured best on the CPU (docs/speedrun.md); the GPU's guesses
DEFAULT_LEVERS = {"cpu": Levers(precision="bf16-mixed", channels_last=True),
                  "cuda": Levers(precision="bf16-mixed", channels_last=True, cuda_graphs=True)}


def default_levers(device: torch.device) -> Levers:
    return DEFAULT_LEVERS.get(device.type, Levers())


def recipe_optimizer(model: torch.nn.Module, recipe: Recipe, levers: Levers, device: torch.device
                     ) -> torch.optim.Adam:
    """The recipe's Adam, as a seed steps it and as its FLOPs are counted."""
    lr: float | torch.Tensor = recipe.max_lr
    if levers.cuda_graphs:  # a captured step reads the learning rate from device memory, which the schedule fills
        lr = torch.tensor(recipe.max_lr, device=device)
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(model.parameters(), lr=lr, capturable=levers.cuda_graphs, fused=fused or None)


@dataclass(frozen=True)
class SeedResult:
    seed: int
    accuracy: float  # percent, over the whole test set
    correct: int
    total: int
    seconds: float  # timed: training + full test evaluation
    train_s: float
    eval_s: float
    warmup_s: float  # not in `seconds`: first-call costs, reported apart
    final_loss: float  # the last epoch's mean training loss


def load_to_device(train: RawSplit, test: RawSplit, spec: DatasetSpec, batch_size: int,
                   device: torch.device, seed: int = 0, dtype: torch.dtype = torch.float32
                   ) -> tuple[DeviceLoader, DeviceLoader, float]:
    """Both splits on the device, normalised, in `dtype`; returns the loaders and the seconds it took.
    With mixed precision the inputs are kept in its dtype: the first layer computes in it anyway (autocast
    would cast them at every step), so the arithmetic is the same, with half the bytes to gather."""
    with Timer(device) as t:
        tr = DeviceLoader(train, spec.mean, spec.std, batch_size, device, shuffle=True, seed=seed, dtype=dtype)
        te = DeviceLoader(test, spec.mean, spec.std, 1000, device, shuffle=False, dtype=dtype)
    return tr, te, t.seconds


class _FirstBatchOnly:
    """A loader that serves only the first batch of another: the evaluation's warm-up."""

    def __init__(self, loader: DeviceLoader) -> None:
        self.device = loader.device
        self._loader = loader

    def batches(self, epoch: int = 0):  # noqa: ANN201 - DeviceLoader's iterator
        yield next(self._loader.batches(epoch))


def run_seed(recipe: Recipe, levers: Levers, seed: int, train: DeviceLoader, test: DeviceLoader,
             shape: DataShape) -> SeedResult:
    """One from-scratch run: build, warm up (untimed, undone), then train + evaluate (timed)."""
    device = train.device
    train.seed = seed  # this seed's batch order
    torch.manual_seed(seed)
    model = prepare_model(create_model(recipe.model, shape), levers, device, sample_shape=shape.sample)
    optimizer = recipe_optimizer(model, recipe, levers, device)
    # no momentum cycling: Adam's betas are host floats that a captured CUDA graph would freeze, and the
    # recipe must be the same arithmetic with every lever
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.max_lr,
                                                   total_steps=recipe.epochs * len(train),
                                                   pct_start=recipe.pct_start, cycle_momentum=False)
    step = make_step(model, optimizer, levers, device, batch_size=recipe.batch_size,
                     sample_shape=tuple(train.x.shape[1:]),
                     loss_fn=functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing),
                     input_dtype=train.x.dtype)
    with Timer(device) as warm:
        x0, y0 = next(train.batches(0))
        warm_up(step, x0.clone(), y0.clone(), steps=recipe.warmup_steps)
        with autocast(levers, device):  # the evaluation's first call, too
            evaluate(model, _FirstBatchOnly(test), shape.classes)  # type: ignore[arg-type]
    with Timer(device) as timed:
        with Timer(device) as training:
            for epoch in range(1, recipe.epochs + 1):
                stats = train_epoch(model, optimizer, train, epoch=epoch, global_step=0, log_every=NO_LOG,
                                    step=step, on_step=schedule.step)
        with Timer(device) as evaluation, autocast(levers, device):
            result = evaluate(model, test, shape.classes)  # the whole test set; ends in a host read (a sync)
    return SeedResult(seed=seed, accuracy=100.0 * result.correct / result.total, correct=result.correct,
                      total=result.total, seconds=timed.seconds, train_s=training.seconds,
                      eval_s=evaluation.seconds, warmup_s=warm.seconds, final_loss=stats.train_loss)

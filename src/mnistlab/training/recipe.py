"""A fast recipe trained from scratch, once per seed: the speedrun's training (measure/speedrun.py times it).

The recipe's steps run through the same machinery as every run's: training.levers.make_step builds the
step with the speed levers, training.loop.train_epoch runs the epochs (with the one-cycle schedule stepped
after each step), training.evaluation.evaluate scores the whole test set, and core/timing.py's Timer
times them. The warm-up (first-call costs: oneDNN/cuDNN kernel choice, torch.compile, CUDA graph capture)
is training.levers.warm_up's, timed apart and undone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mnistlab.core.timing import Timer
from mnistlab.data.datasets import DatasetSpec, DataShape
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import Levers, autocast, keep_freed_memory, make_step, prepare_model, warm_up
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
    max_lr: float = 0.04  # Adam, one-cycle: warm up to max_lr, then anneal to ~0
    pct_start: float = 0.25
    warmup_steps: int = 2  # untimed steps per seed, undone before the timed run
    label_smoothing: float = 0.1  # +0.12 points of validation accuracy at batch 256, for nothing
    adam_beta2: float = 0.95  # Adam's second-moment decay: +0.05-0.07 points of validation accuracy over 0.999
    # issue 32: the first 80% of each epoch's shuffled batches, and test-time shifts for the unsure images, which
    # win back the accuracy the other 20% held (validation: 98.91% against 98.92% for the whole epoch without)
    epoch_fraction: float = 0.8  # of each epoch's batches, the first ceil(fraction x batches) are trained
    test_shift: int = 1  # pixels; 0: off. An unsure test image is also viewed shifted up and down by this much
    test_shift_below: float = 0.5  # unsure: its softmax peaks below this (1.8% of MNIST's validation images)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def batches_per_epoch(self, batches: int) -> int:
        """How many of an epoch's `batches` (in its shuffled order) are trained: at least one."""
        return max(1, math.ceil(round(batches * self.epoch_fraction, 9)))


class ShiftedViews(torch.nn.Module):
    """The recipe's evaluation of `model`: log-probabilities, where for every image whose softmax peaks below
    `below` they are those of the mean softmax over the image and the image shifted up and down by `shift`
    pixels (the edge row repeated). A confident image's output is the model's own (batch norm in eval mode
    treats each image alone), so the extra views cost two forward passes of the unsure images only."""

    def __init__(self, model: torch.nn.Module, shift: int, below: float) -> None:
        super().__init__()
        self.model, self.shift, self.log_below = model, shift, math.log(below)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = self.model(x).float().log_softmax(1)
        unsure = (logp.amax(1) < self.log_below).nonzero().squeeze(1)
        if len(unsure):
            u, s = x.index_select(0, unsure), self.shift
            up = torch.cat([u[..., s:, :], u[..., -1:, :].expand(*u.shape[:-2], s, u.shape[-1])], dim=-2)
            down = torch.cat([u[..., :1, :].expand(*u.shape[:-2], s, u.shape[-1]), u[..., :-s, :]], dim=-2)
            probs = logp.index_select(0, unsure).exp() + sum(self.model(v).float().softmax(1) for v in (up, down))
            logp.index_copy_(0, unsure, probs.div_(3).log_())
        return logp


def evaluated(model: torch.nn.Module, recipe: Recipe) -> torch.nn.Module:
    """What the recipe evaluates: the model, or its ShiftedViews."""
    return ShiftedViews(model, recipe.test_shift, recipe.test_shift_below) if recipe.test_shift else model


# the recipe's own levers per device: measured best on the CPU (docs/speedrun.md); the GPU's guesses
DEFAULT_LEVERS = {
    "cpu": Levers(precision="bf16-mixed", channels_last=True),
    "cuda": Levers(precision="bf16-mixed", channels_last=True, cuda_graphs=True),
}


def default_levers(device: torch.device) -> Levers:
    return DEFAULT_LEVERS.get(device.type, Levers())


def recipe_optimizer(model: torch.nn.Module, recipe: Recipe, levers: Levers, device: torch.device) -> torch.optim.Adam:
    """The recipe's Adam, as a seed steps it and as its FLOPs are counted."""
    lr: float | torch.Tensor = recipe.max_lr
    if levers.cuda_graphs:  # a captured step reads the learning rate from device memory, which the schedule fills
        lr = torch.tensor(recipe.max_lr, device=device)
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(
        model.parameters(), lr=lr, betas=(0.9, recipe.adam_beta2), capturable=levers.cuda_graphs, fused=fused or None
    )


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


def load_to_device(
    train: RawSplit,
    test: RawSplit,
    spec: DatasetSpec,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
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

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield next(self._loader.batches(epoch))


def run_seed(
    recipe: Recipe, levers: Levers, seed: int, train: DeviceLoader, test: DeviceLoader, shape: DataShape
) -> SeedResult:
    """One from-scratch run: build, warm up (untimed, undone), then train + evaluate (timed)."""
    device = train.device
    if device.type == "cpu":  # no page faults for each step's activations (issue 32)
        keep_freed_memory()
    train.seed = seed  # this seed's batch order
    torch.manual_seed(seed)
    model = prepare_model(create_model(recipe.model, shape), levers, device, sample_shape=shape.sample)
    optimizer = recipe_optimizer(model, recipe, levers, device)
    # no momentum cycling: Adam's betas are host floats that a captured CUDA graph would freeze, and the
    # recipe must be the same arithmetic with every lever
    per_epoch = recipe.batches_per_epoch(len(train))  # the first ones of each epoch's shuffled order
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.max_lr,
        total_steps=recipe.epochs * per_epoch,
        pct_start=recipe.pct_start,
        cycle_momentum=False,
    )
    step = make_step(
        model,
        optimizer,
        levers,
        device,
        batch_size=recipe.batch_size,
        sample_shape=tuple(train.x.shape[1:]),
        loss_fn=functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing),
        input_dtype=train.x.dtype,
    )
    with Timer(device) as warm:
        x0, y0 = next(train.batches(0))
        warm_up(step, x0.clone(), y0.clone(), steps=recipe.warmup_steps)
        evaluation = evaluated(model, recipe)
        with autocast(levers, device):  # the evaluation's first call, too
            evaluate(evaluation, _FirstBatchOnly(test), shape.classes)  # type: ignore[arg-type]
    with Timer(device) as timed:
        with Timer(device) as training:
            for epoch in range(1, recipe.epochs + 1):
                stats = train_epoch(
                    model,
                    optimizer,
                    train,
                    epoch=epoch,
                    global_step=0,
                    log_every=NO_LOG,
                    max_steps=per_epoch,
                    step=step,
                    on_step=schedule.step,
                )
        with Timer(device) as scoring, autocast(levers, device):
            result = evaluate(evaluation, test, shape.classes)  # the whole test set; ends in a host read (a sync)
    return SeedResult(
        seed=seed,
        accuracy=100.0 * result.correct / result.total,
        correct=result.correct,
        total=result.total,
        seconds=timed.seconds,
        train_s=training.seconds,
        eval_s=scoring.seconds,
        warmup_s=warm.seconds,
        final_loss=stats.train_loss,
    )

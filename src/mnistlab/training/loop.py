"""The training loop for one epoch. No file I/O here: results go back to the caller."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.core.distributed import all_reduce_mean_
from mnistlab.core.errors import DataError, DivergenceError
from mnistlab.core.timing import Timer
from mnistlab.data.loader import DeviceLoader


def fused_for(device: torch.device) -> bool | None:
    """Fused SGD where torch has it for SGD and we rely on it (torch >= 2.4 on the CPU); None: the default."""
    return True if device.type in ("cpu", "cuda") else None


def make_optimizer(model: nn.Module, lr: float, momentum: float) -> torch.optim.Optimizer:
    """The notebook's SGD. The fused kernel does the same update in one pass over the
    parameters; on the CPU it cuts the MLP's optimizer step from about 0.22 to 0.07 ms."""
    device = next(model.parameters()).device
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, fused=fused_for(device))


def set_fused_for(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Call after `load_state_dict`, which restores the saved groups' `fused` flag as the saving
    device had it: a CUDA run resumed on MPS would keep fused=True, an MPS run resumed on CUDA
    would lose it. The optimizer was built for `device`, so its own flags agree with this one."""
    fused = fused_for(device)
    for group in optimizer.param_groups:
        group["fused"] = fused
        if fused:
            group["foreach"] = None  # torch refuses fused and foreach together


@dataclass(frozen=True)
class EpochStats:
    train_loss: float  # mean of the step losses, as the notebook reports it
    steps: int
    samples: int
    seconds: float  # wall time of the training part of the epoch
    step_log: list[tuple[int, float]]  # (global step, loss) every `log_every` steps


@dataclass(frozen=True)
class EpochProgress:
    """The first `steps` steps of an epoch, as a mid-epoch checkpoint keeps them: with the weights and
    the optimizer saved at that step, a resume continues the epoch as if it had never stopped."""

    steps: int
    losses: torch.Tensor  # float32 on the CPU, one per step (averaged over the processes)
    samples: int
    seconds: float


Checkpoint = Callable[[EpochProgress], None]


class ProgressBar(Protocol):
    """What train_epoch uses of a tqdm bar."""

    def update(self, n: int) -> object: ...

    def set_postfix(self, *, refresh: bool = ..., **kwargs: Any) -> object: ...


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DeviceLoader,
    *,
    epoch: int,
    global_step: int,
    log_every: int = 100,
    max_steps: int | None = None,
    progress: ProgressBar | None = None,
    distributed: bool = False,
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    resume_from: EpochProgress | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Checkpoint | None = None,
    on_step: Callable[[], Any] | None = None,
) -> EpochStats:
    """Run one epoch of SGD steps; `progress` is an optional tqdm-like bar (update/set_postfix).

    `step(x, y) -> loss` replaces the plain fp32 eager step (training.levers.make_step builds one
    with the speed levers); a step with `static_inputs` has the loader fill those buffers in place.

    Step losses stay on the device until the epoch ends, so that the GPU is not made to
    wait every step; they are read every `log_every` steps for the log and the bar.
    Raises DivergenceError naming the epoch and the first step whose loss is not finite.
    `distributed`: the step losses are averaged over the job's processes at the end of the epoch (the
    loss of each global batch, as one process would log it), and only then checked, so that every
    process takes the same decision.
    `checkpoint_every`: after every that many steps of the epoch, `on_checkpoint` gets the epoch so far
    (its losses averaged and checked first); `resume_from` continues an epoch from such a point.
    `on_step()` runs after each step (a learning-rate schedule).
    """
    model.train()
    device = loader.device
    start = resume_from.steps if resume_from else 0
    done = resume_from.losses if resume_from else torch.zeros(0)  # losses already reduced and on the CPU
    losses: list[torch.Tensor] = []  # since `done`
    samples = resume_from.samples if resume_from else 0
    if progress is not None and samples:
        progress.update(samples)
    timer = Timer(device, already=resume_from.seconds if resume_from else 0.0).start()
    batches = loader.batches(epoch, out=getattr(step, "static_inputs", None), skip=start)
    if max_steps is not None:  # stop before gathering a batch that is not trained
        batches = itertools.islice(batches, max(0, max_steps - start))
    for i, (x, y) in enumerate(batches, start=start):
        if step is None:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        else:
            loss = step(x, y)
        if on_step is not None:
            on_step()
        losses.append(loss.detach())
        samples += len(y)
        if i % log_every == 0:
            value = loss.item()  # the one sync of a logged step
            if not distributed and not math.isfinite(value):  # .item() already has the value: no second sync
                _diverged(list(done) + losses, epoch, global_step)
            if progress is not None:
                progress.set_postfix(loss=f"{value:.4f}", refresh=False)
        if progress is not None:
            progress.update(len(y))
        if on_checkpoint is not None and checkpoint_every and (i + 1) % checkpoint_every == 0:
            done, losses = _checked(done, losses, distributed, epoch, global_step), []
            on_checkpoint(EpochProgress(i + 1, done, samples, timer.lap()))
    all_losses = _checked(done, losses, distributed, epoch, global_step).double()  # MPS has no float64: on the CPU
    if not len(all_losses):
        raise DataError(
            f"epoch {epoch} has no training step: {loader.num_samples} training samples, fewer than "
            f"the {loader.world_size} processes of the job"
        )
    seconds = timer.lap()
    step_log = [(global_step + i + 1, float(all_losses[i])) for i in range(0, len(all_losses), log_every)]
    return EpochStats(float(all_losses.mean()), len(all_losses), samples, seconds, step_log)


def _checked(
    done: torch.Tensor, losses: list[torch.Tensor], distributed: bool, epoch: int, global_step: int
) -> torch.Tensor:
    """`done` and the new step losses, averaged over the processes, on the CPU (one transfer), all finite."""
    if losses:
        stacked = torch.stack(losses)
        if distributed:
            all_reduce_mean_(stacked)
        done = torch.cat([done, stacked.cpu().float()])
    if not bool(torch.isfinite(done).all()):
        _diverged(list(done), epoch, global_step)
    return done


def _diverged(losses: list[torch.Tensor], epoch: int, global_step: int) -> None:
    values = torch.stack([v.cpu() for v in losses])
    bad = int((~torch.isfinite(values)).nonzero()[0, 0])
    raise DivergenceError(
        f"training diverged: the loss became {values[bad].item()} at epoch {epoch}, "
        f"step {global_step + bad + 1}; lower --lr"
    )

"""The training loop for one epoch. No file I/O here: results go back to the caller."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.core.errors import DivergenceError
from mnistlab.core.device import synchronize
from mnistlab.core.distributed import all_reduce_mean_
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


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DeviceLoader, *,
                epoch: int, global_step: int, log_every: int = 100, max_steps: int | None = None,
                progress=None, distributed: bool = False,
                step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> EpochStats:
    """Run one epoch of SGD steps; `progress` is an optional tqdm-like bar (update/set_postfix).

    `step(x, y) -> loss` replaces the plain fp32 eager step (training.levers.make_step builds one
    with the speed levers); a step with `static_inputs` has the loader fill those buffers in place.

    Step losses stay on the device until the epoch ends, so that the GPU is not made to
    wait every step; they are read every `log_every` steps for the log and the bar.
    Raises DivergenceError naming the epoch and the first step whose loss is not finite.
    `distributed`: the step losses are averaged over the job's processes at the end of the epoch (the
    loss of each global batch, as one process would log it), and only then checked, so that every
    process takes the same decision.
    """
    model.train()
    device = loader.device
    losses: list[torch.Tensor] = []
    logged: list[int] = []  # indices of the steps whose loss goes into the step log
    samples = 0
    synchronize(device)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader.batches(epoch, out=getattr(step, "static_inputs", None))):
        if max_steps is not None and i >= max_steps:
            break
        if step is None:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        else:
            loss = step(x, y)
        losses.append(loss.detach())
        samples += len(y)
        if i % log_every == 0:
            logged.append(i)
            value = loss.item()  # the one sync of a logged step
            if not distributed and not math.isfinite(value):  # .item() already has the value: no second sync
                _diverged(losses, epoch, global_step)
            if progress is not None:
                progress.set_postfix(loss=f"{value:.4f}", refresh=False)
        if progress is not None:
            progress.update(len(y))
    stacked = torch.stack(losses)
    if distributed:
        all_reduce_mean_(stacked)
    all_losses = stacked.cpu().double()  # one transfer per epoch; MPS has no float64
    synchronize(device)
    seconds = time.perf_counter() - t0
    if not bool(torch.isfinite(all_losses).all()):
        _diverged(list(all_losses), epoch, global_step)
    step_log = [(global_step + i + 1, float(all_losses[i])) for i in logged]
    return EpochStats(float(all_losses.mean()), len(losses), samples, seconds, step_log)


def _diverged(losses: list[torch.Tensor], epoch: int, global_step: int) -> None:
    values = torch.stack(losses).cpu()
    bad = int((~torch.isfinite(values)).nonzero()[0, 0])
    raise DivergenceError(
        f"training diverged: the loss became {values[bad].item()} at epoch {epoch}, "
        f"step {global_step + bad + 1}; lower --lr"
    )

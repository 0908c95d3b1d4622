"""Evaluation of a model on a loader: loss, accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.core.distributed import all_reduce_sum_
from mnistlab.core.faults import kill_point
from mnistlab.core.richdisplay import html_table
from mnistlab.core.timing import Timer
from mnistlab.data.loader import DeviceLoader


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean cross-entropy per sample
    accuracy: float  # fraction correct
    correct: int
    total: int
    per_class_accuracy: list[float]
    confusion: list[list[int]]  # rows: true class, columns: predicted
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """Name and value of each figure, as a notebook shows them."""
        per_class = ", ".join(f"{i}: {a:.1%}" for i, a in enumerate(self.per_class_accuracy))
        return [
            ("accuracy", f"{self.accuracy:.2%} ({self.correct:,} of {self.total:,})"),
            ("loss", f"{self.loss:.4f} (mean cross-entropy per sample)"),
            ("seconds", f"{self.seconds:.2f}"),
            ("per-class accuracy", per_class),
        ]

    def _repr_html_(self) -> str:
        return html_table("test result", self.rows())


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, num_classes: int, distributed: bool = False) -> EvalResult:
    """Loss and confusion over the loader's samples; `distributed`: each process holds a shard of
    every batch (DeviceLoader's `shard`), and the sums are added over the job before reading them."""
    kill_point("evaluate")
    device = loader.device
    model.eval()
    with Timer(device) as timer:
        acc_dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        loss_sum = torch.zeros((), dtype=acc_dtype, device=device)
        # Counts go into a fixed-size tensor: bincount's output size depends on the data, so on a GPU it
        # reads the maximum back (a sync per batch). float32 on MPS (weak int64 support): exact below 2**24.
        count_dtype = torch.float32 if device.type == "mps" else torch.int64
        confusion = torch.zeros(num_classes * num_classes, dtype=count_dtype, device=device)
        for x, y in loader.batches():
            out = model(x)
            if not isinstance(out, torch.Tensor) or out.shape != (len(y), num_classes):  # a model of one's own
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"its output on a batch of {len(y)} is {got}, expected {(len(y), num_classes)}")
            loss_sum += F.cross_entropy(out, y, reduction="sum").to(acc_dtype)
            cell = y * num_classes + out.argmax(1)
            confusion.index_add_(0, cell, torch.ones_like(cell, dtype=count_dtype))
        if distributed:
            all_reduce_sum_(loss_sum)
            all_reduce_sum_(confusion)
        cm = confusion.view(num_classes, num_classes).cpu().long()  # the one sync of the loop
    seconds = timer.seconds
    model.train()
    total = int(cm.sum())
    correct = int(cm.diagonal().sum())
    row = cm.sum(1).clamp(min=1)
    return EvalResult(
        loss=float(loss_sum) / max(total, 1),
        accuracy=correct / max(total, 1),
        correct=correct,
        total=total,
        per_class_accuracy=(cm.diagonal() / row).tolist(),
        confusion=cm.tolist(),
        seconds=seconds,
    )

"""Figures, drawn from run directories alone (never from a live training)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

from mnistlab.core.rundir import RunDir  # noqa: E402
from mnistlab.measure.bench import PHASES, BenchResult  # noqa: E402
from mnistlab.report.document import plain_text  # noqa: E402

# names are shown as they are: '$5_vs_$6' is a run name, not TeX, and a bad one must not break a figure
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def _legend(ax, lines: list, labels: list[str], **kw) -> None:
    """A legend with the labels given explicitly: matplotlib silently drops labels that start with
    '_' from an automatic legend, and run names may."""
    ax.legend(lines, [plain_text(t) for t in labels], **kw)


def literal_text(draw: Callable[..., Path]) -> Callable[..., Path]:
    """Draw with mathtext and TeX off, whatever the user's matplotlibrc says."""
    @functools.wraps(draw)
    def wrapped(*args, **kwargs) -> Path:
        with plt.rc_context(LITERAL_TEXT):
            return draw(*args, **kwargs)
    return wrapped


@literal_text
def plot_runs(runs: Sequence[RunDir], out: Path, upto_epoch: int | None = None, title: str | None = None) -> Path:
    """Train and validation loss (log-scale y) and validation accuracy per epoch; runs overlay."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    loss_lines, loss_labels, acc_lines, acc_labels = [], [], [], []
    for i, run in enumerate(runs):
        rows = [r for r in run.metrics() if upto_epoch is None or r["epoch"] <= upto_epoch]
        epochs = [int(r["epoch"]) for r in rows]
        color = f"C{i % 10}"
        label = "" if len(runs) == 1 else f"{run.name}: "
        loss_lines += ax_loss.plot(epochs, [r["train_loss"] for r in rows], "-o", ms=3, color=color)
        loss_lines += ax_loss.plot(epochs, [r["val_loss"] for r in rows], "--s", ms=3, color=color)
        loss_labels += [f"{label}train", f"{label}validation"]
        acc_lines += ax_acc.plot(epochs, [100 * r["val_accuracy"] for r in rows], "-o", ms=3, color=color)
        acc_labels.append(run.name)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title(plain_text(title or "Training and validation loss"))
    ax_loss.grid(True, which="both", alpha=0.3)
    _legend(ax_loss, loss_lines, loss_labels, fontsize=8)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.set_title("Validation accuracy")
    ax_acc.grid(True, alpha=0.3)
    if len(runs) > 1:
        _legend(ax_acc, acc_lines, acc_labels, fontsize=8)
    return save_figure(fig, out)


@literal_text
def plot_bench(result: BenchResult, out: Path) -> Path:
    """Share of each training step by phase, one bar per bench cell."""
    cells = result.cells
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(cells) + 2.0))
    left = [0.0] * len(cells)
    for i, p in enumerate(PHASES):
        vals = [100 * c.share(p) for c in cells]
        ax.barh([c.key for c in cells], vals, left=left, color=f"C{i}", label=p)
        left = [a + b for a, b in zip(left, vals)]
    for y, c in enumerate(cells):
        ax.text(101, y, f"{c.step_median_s * 1e3:.2f} ms/step", va="center", fontsize=8)
    ax.set_xlim(0, 125)
    ax.set_xlabel("share of a training step (%)")
    ax.set_title("Where each training step's time goes")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(PHASES), fontsize=8, frameon=False)
    return save_figure(fig, out)


@literal_text
def plot_samples(images, labels, classes: Sequence[str], out: Path, n: int = 32) -> Path:
    """A grid of the first `n` images (uint8, (N, H, W)) titled with their labels."""
    n = min(n, len(images))
    cols = min(8, n)
    rows = -(-n // cols)
    size = 2.6 if n == 1 else 1.3  # a single sample is shown large
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * 1.15 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(f"{int(labels[i])}: {classes[int(labels[i])]}" if classes[int(labels[i])] != str(int(labels[i]))
                         else str(int(labels[i])), fontsize=8)
    return save_figure(fig, out)


def save_figure(fig, out: Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

"""Figures, drawn from run directories alone (never from a live training).

Built on matplotlib.figure.Figure, not pyplot: no global backend is chosen and no figure is left
open, so importing this module changes nothing in a notebook user's own plots. Every drawing
function writes its figure to `out`, or, given no path, returns it: an InlineFigure, which a
notebook shows inline and `savefig` still saves."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import matplotlib
import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis, XAxis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import LogFormatter, MaxNLocator

from mnistlab.core.errors import ConfigError, StorageError
from mnistlab.core.rundir import RunDir
from mnistlab.core.writer import FILES
from mnistlab.measure.bench import PHASES, BenchResult, bound_label
from mnistlab.measure.decomposition import Decomposition
from mnistlab.measure.epochs import EpochTiming, epoch_timing, resume_points
from mnistlab.measure.gpus import Gpu
from mnistlab.measure.prediction import expectations
from mnistlab.report.document import plain_text

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

# names are shown as they are: '$5_vs_$6' is a run name, not TeX, and a bad one must not break a figure
LITERAL_TEXT: dict[RcKeyType, Any] = {"text.parse_math": False, "text.usetex": False}
# every drawing function runs under it, whatever the user's matplotlibrc says
literal_text = matplotlib.rc_context(LITERAL_TEXT)


SPARSE_FROM_DECADES, SPARSE_UP_TO_DECADES = 0.7, 2.0  # a horizontal axis's minor labels: see plain_log_labels


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of which ticks to label, each written as a plain number (0.6, 2, 0.05):
    matplotlib's default writes mathtext, which shows raw ('$\\mathdefault{6\\times10^{-1}}$') with
    parse_math off."""

    def __init__(self, *args: Any, mantissas: frozenset[int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mantissas = mantissas  # None: LogFormatter's choice; else only these (1 to 9) are labelled

    def __call__(self, x: float, pos: int | None = None) -> str:
        if self.mantissas is not None and self._decades() >= SPARSE_FROM_DECADES:
            if self._decades() > SPARSE_UP_TO_DECADES:  # the decades' own labels are enough
                return ""
            mantissa = round(x / 10 ** np.floor(np.log10(x) + 1e-9)) if x > 0 else 0
            return plain_number(x) if mantissa in self.mantissas else ""
        return plain_number(x) if super().__call__(x, pos) else ""

    def _decades(self) -> float:
        lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (1.0, 1.0)
        return float(np.log10(hi / lo)) if lo > 0 else 0.0


def plain_number(x: float) -> str:
    """0.6, 2, 0.00001, 1000000: never '1e+06', which a student reads less easily."""
    return np.format_float_positional(float(f"{x:.6g}"), trim="-")


class InlineFigure(Figure):
    """A Figure that shows itself as a PNG in a notebook: without pyplot, IPython knows no
    display for a bare Figure until the user activates an inline backend."""

    def _repr_png_(self) -> bytes:
        return figure_bytes(self, "png")


def plain_log_labels(axis: Axis) -> None:
    """Label a log axis's major and minor ticks in plain numbers (call after setting the scale). On a
    horizontal axis spanning 0.7 to 2 decades only the 2s and 5s between decades are labelled, and
    beyond 2 decades only the decades: side by side, '0.002 0.003 0.004' ran into each other in a sweep
    panel."""
    axis.set_major_formatter(PlainLogFormatter())
    horizontal = isinstance(axis, XAxis)
    axis.set_minor_formatter(
        PlainLogFormatter(labelOnlyBase=False, mantissas=frozenset({2, 5}) if horizontal else None)
    )


def _integer_epochs(ax: Axes) -> None:
    """Epochs are whole numbers: no 1.5 or 2.5 ticks on short runs."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_resumes(ax: Axes, rows: list[dict[str, float]], color: str) -> list[Line2D]:
    """A dotted line where each later train/resume session began; returns the lines."""
    return [ax.axvline(x, color=color, ls=":", lw=1.2) for x in resume_points(rows)]


def resumed_label(marks: list[Line2D], name: str = "") -> str:
    """One legend entry for all of a run's resume lines, saying how many there are."""
    return f"{name}resumed here" + (f" ({len(marks)} resumes)" if len(marks) > 1 else "")


def run_labels(runs: Sequence[RunDir]) -> list[str]:
    """Each run's name in a legend: its folder's name, or where two runs share it ('A/mlp-cpu', 'B/mlp-cpu'),
    the shortest ending of its path that tells it apart."""
    parts = [Path(r.path).absolute().parts for r in runs]
    depth = [1] * len(runs)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        shared = {x for x in labels if labels.count(x) > 1}
        longer = [i for i, x in enumerate(labels) if x in shared and depth[i] < len(parts[i])]
        if not longer:  # all distinct, or the same folder given twice
            return labels
        for i in longer:
            depth[i] += 1


def _legend(ax: Axes, lines: list[Artist], labels: list[str], **kw: Any) -> None:
    """A legend with the labels given explicitly: matplotlib silently drops labels that start with
    '_' from an automatic legend, and run names may."""
    ax.legend(lines, [plain_text(t) for t in labels], **kw)


@overload
def plot_runs(runs: Sequence[RunDir], out: Path, upto_epoch: int | None = None, title: str | None = None) -> Path: ...
@overload
def plot_runs(
    runs: Sequence[RunDir], out: None = None, upto_epoch: int | None = None, title: str | None = None
) -> Figure: ...


@literal_text
def plot_runs(
    runs: Sequence[RunDir], out: Path | None = None, upto_epoch: int | None = None, title: str | None = None
) -> Path | Figure:
    """Train and validation loss (log-scale y) and validation accuracy per epoch; runs overlay."""
    fig = InlineFigure(figsize=(11, 4.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    loss_lines, loss_labels, acc_lines, acc_labels = [], [], [], []
    names = run_labels(runs)
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        rows = [r for r in run.metrics() if upto_epoch is None or r["epoch"] <= upto_epoch]
        epochs = [int(r["epoch"]) for r in rows]
        color = f"C{i % 10}"
        label = "" if len(runs) == 1 else f"{name}: "
        loss_lines += ax_loss.plot(epochs, [r["train_loss"] for r in rows], "-o", ms=3, color=color)
        loss_lines += ax_loss.plot(epochs, [r["val_loss"] for r in rows], "--s", ms=3, color=color)
        loss_labels += [f"{label}train", f"{label}validation"]
        acc_lines += ax_acc.plot(epochs, [100 * r["val_accuracy"] for r in rows], "-o", ms=3, color=color)
        acc_labels.append(name)
        marks = _mark_resumes(ax_loss, rows, color)
        _mark_resumes(ax_acc, rows, color)
        if marks:  # one entry per run, in its colour, saying how many times it was resumed
            loss_lines.append(marks[0])
            loss_labels.append(resumed_label(marks, label))
    ax_loss.set_yscale("log")
    plain_log_labels(ax_loss.yaxis)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss (log scale)")
    ax_loss.set_title(plain_text(title or "Training and validation loss"))
    ax_loss.grid(True, which="both", alpha=0.3)
    _legend(ax_loss, loss_lines, loss_labels, fontsize=8)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.set_title("Validation accuracy")
    ax_acc.grid(True, alpha=0.3)
    _integer_epochs(ax_loss)
    _integer_epochs(ax_acc)
    if len(runs) > 1:
        _legend(ax_acc, acc_lines, acc_labels, fontsize=8)
    return _finish(fig, out)


def first_epoch_label(t: EpochTiming) -> str:
    """The legend of the first epochs: cold only where the warm-up was timed apart, and then it says so."""
    if not t.warmup_s:
        return "first epoch of a session"
    return (
        "first epoch of a session (after a cold start of "
        + ", ".join(f"{w:.2f}" for w in t.warmup_s)
        + " s, timed apart)"
    )


@overload
def plot_epoch_times(runs: Sequence[RunDir], out: Path, title: str | None = None) -> Path: ...
@overload
def plot_epoch_times(runs: Sequence[RunDir], out: None = None, title: str | None = None) -> Figure: ...


@literal_text
def plot_epoch_times(runs: Sequence[RunDir], out: Path | None = None, title: str | None = None) -> Path | Figure:
    """Training seconds of every epoch: the first epoch of each train/resume session circled, epochs
    measured on a busy machine crossed, the steady state's median and min-max band marked."""
    fig = InlineFigure(figsize=(8, 4))
    ax = fig.subplots()
    for i, (run, label) in enumerate(zip(runs, run_labels(runs), strict=True)):
        rows = run.metrics()
        t = epoch_timing(rows)
        color = f"C{i % 10}"
        name = "" if len(runs) == 1 else f"{label}: "
        ax.plot(
            [int(r["epoch"]) for r in rows],
            [r["train_seconds"] for r in rows],
            "-o",
            ms=4,
            color=color,
            label=f"{name}train seconds per epoch",
        )
        ax.plot(
            t.cold_epochs,
            t.cold_s,
            "o",
            ms=10,
            mfc="none",
            mec="red",
            mew=1.5,
            label=first_epoch_label(t) if i == 0 else None,
        )
        busy = [r for r in rows if int(r["epoch"]) in t.busy_epochs]
        if busy:
            ax.plot(
                [int(r["epoch"]) for r in busy],
                [r["train_seconds"] for r in busy],
                "x",
                ms=11,
                color="darkorange",
                mew=2,
                label=f"{name}measured while the machine was busy",
            )
        if t.steady_s:
            ax.axhline(
                t.spread.median, color=color, ls="--", lw=1, label=f"{name}steady state: median {t.spread.median:.2f} s"
            )
            ax.axhspan(
                t.spread.min,
                t.spread.max,
                color=color,
                alpha=0.12,
                label=f"{name}steady state min\u2013max" if i == 0 or len(runs) > 1 else None,
            )
        marks = _mark_resumes(ax, rows, color)
        if marks:  # one entry per run, saying how many times it was resumed
            marks[0].set_label(resumed_label(marks, name))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training seconds")
    ax.set_title(plain_text(title or "Time per epoch"))
    ax.grid(True, alpha=0.3)
    _integer_epochs(ax)
    ax.legend(fontsize=8)
    return _finish(fig, out)


@overload
def plot_bench(result: BenchResult, out: Path) -> Path: ...
@overload
def plot_bench(result: BenchResult, out: None = None) -> Figure: ...


@literal_text
def plot_bench(result: BenchResult, out: Path | None = None) -> Path | Figure:
    """Share of each training step by phase, one bar per bench cell (`result`: as run, or
    BenchResult.from_dict of a bench.json)."""
    cells = result.cells
    fig = InlineFigure(figsize=(10, 0.5 * len(cells) + 2.0))
    ax = fig.subplots()
    left = [0.0] * len(cells)
    labels = []
    for c in cells:  # the step time and its range in the bar's label, so the share axis ends at 100%
        sp = c.step
        labels.append(
            f"{c.key}\n{sp.median * 1e3:.2f} ms/step ({sp.min * 1e3:.2f}\u2013"
            f"{sp.max * 1e3:.2f})" + ("" if c.stability.stable else " unstable")
        )
    for i, p in enumerate(PHASES):
        vals = [100 * c.share(p) for c in cells]
        ax.barh(labels, vals, left=left, color=f"C{i}", label=p)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of a training step, of the sum of its timed phases (%)")
    ax.set_title("Where each training step's time goes")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(PHASES), fontsize=8, frameon=False)
    return _finish(fig, out)


def cpu_roofs(expected: Sequence) -> list[tuple[str, float, list[str]]]:
    """This CPU's bandwidth roofs: (level, bytes/s, the models whose working set it holds), from each model's
    decomposition (measure/ceilings.bandwidth_for); a bench without decompositions has DRAM's alone."""
    roofs: dict[str, tuple[float, list[str]]] = {}
    for e in expected:
        d = e.here.decomposition
        level, bw = (d.bandwidth[0], d.bandwidth[1]) if d else ("DRAM", e.here.bandwidth_bytes_per_s)
        roofs.setdefault(level, (bw, []))[1].append(e.model)
    return [(level, bw, models) for level, (bw, models) in roofs.items()]


@overload
def plot_roofline(result: BenchResult, gpu: Gpu, out: Path) -> Path: ...
@overload
def plot_roofline(result: BenchResult, gpu: Gpu, out: None = None) -> Figure: ...


@literal_text
def plot_roofline(result: BenchResult, gpu: Gpu, out: Path | None = None) -> Path | Figure:
    """Arithmetic intensity (FLOP per byte) against attainable GFLOP/s, log-log: this CPU's measured roofs
    (compute ceiling; the bandwidth of each step's working set, `cpu_roofs`) and `gpu`'s datasheet roofs (float32,
    which may run at the TF32 rate), with each model's training step measured on the CPU (labelled with its one
    judgement, Cell.bound), predicted on `gpu` (its FLOPs over its lower bound), and measured on a GPU where the
    bench ran one."""
    expected = expectations(result, gpu)
    if not expected:
        raise ConfigError("no counted training step in this bench to draw on a roofline (rerun mnistlab bench)")
    fig = InlineFigure(figsize=(8.5, 5.5))
    ax = fig.subplots()
    cpu = expected[0].here
    threads = (result.ceilings.get("cpu") or {}).get("threads")
    on = f" on {threads} thread{'s' * (threads != 1)}" if isinstance(threads, int) else ""
    roofs = [
        (
            f"this CPU, measured{on}; {level} bandwidth (the {' and '.join(models)}'s working set)",
            cpu.ceiling_flops_per_s,
            bw,
            "C0",
            "-" if i == 0 else "--",
        )
        for i, (level, bw, models) in enumerate(cpu_roofs(expected))
    ]
    roofs.append((f"{gpu.name}, datasheet (float32/TF32)", gpu.peak("float32"), gpu.bandwidth_bytes_per_s, "C1", "-"))
    intensity = [e.here.train_step_flops / e.here.train_step_bytes for e in expected]
    ridges = [peak / bw for _, peak, bw, _, _ in roofs]
    xs = np.logspace(np.log10(min(intensity + ridges) / 10), np.log10(max(intensity + ridges) * 10), 200)
    for label, peak, bw, color, style in roofs:
        ax.plot(
            xs,
            np.minimum(peak, bw * xs) / 1e9,
            style,
            color=color,
            lw=2,
            label=f"{label}: {peak / 1e9:,.0f} GFLOP/s, {bw / 1e9:,.0f} GB/s",
        )
    for e, x in zip(expected, intensity, strict=True):
        here = e.here.achieved_flops_per_s / 1e9
        there = e.prediction.attainable_flops_per_s / 1e9
        ax.plot([x], [here], "o", ms=9, color="C0")
        ax.plot([x], [there], "^", ms=10, mfc="none", mec="C1", mew=2)
        # measured labels below their point, predicted ones above: the two may lie close together
        ax.annotate(
            f"{e.model}: measured here, {bound_label(e.here.bound)}",
            (x, here),
            textcoords="offset points",
            xytext=(8, -12),
            fontsize=8,
        )
        ax.annotate(
            f"{e.model}: predicted, {e.prediction.binds}-bound",
            (x, there),
            textcoords="offset points",
            xytext=(8, 4),
            fontsize=8,
        )
        if e.there is not None:
            ax.plot([x], [e.there.achieved_flops_per_s / 1e9], "x", ms=10, mew=2, color="C2")
            ax.annotate(
                f"{e.model}: measured on {result.devices.get('cuda', 'the GPU')}",
                (x, e.there.achieved_flops_per_s / 1e9),
                textcoords="offset points",
                xytext=(8, -4),
                fontsize=8,
            )
    ax.plot([], [], "o", color="C0", label="a training step measured on this CPU")
    ax.plot([], [], "^", mfc="none", mec="C1", mew=2, label=f"the same step predicted on the {gpu.name} (a bound)")
    if any(e.there is not None for e in expected):
        ax.plot([], [], "x", color="C2", mew=2, label="the same step measured on a GPU")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        plain_log_labels(axis)
    ax.set_xlabel("arithmetic intensity of a training step (FLOP per byte read and written)")
    ax.set_ylabel("attainable GFLOP/s")
    ax.set_title(plain_text(f"Roofline: this CPU and the {gpu.name}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")  # above the bandwidth slopes' low end: no point lies there
    return _finish(fig, out)


@overload
def plot_decomposition(results: Sequence[Decomposition], out: Path) -> Path: ...
@overload
def plot_decomposition(results: Sequence[Decomposition], out: None = None) -> Figure: ...


@literal_text
def plot_decomposition(results: Sequence[Decomposition], out: Path | None = None) -> Path | Figure:
    """Step time against batch size, log-log: every timing measured (small dots), each batch's median (larger),
    and the fitted fixed + per-sample line through the batches up to the cell's (solid; dotted beyond, where it
    was not fitted), one colour per model and thread count; the fixed part alone is the dashed level the line
    flattens onto at small batches."""
    if not results:
        raise ConfigError("no decomposition to draw (measure one first)")
    fig = InlineFigure(figsize=(8.5, 5.5))
    ax = fig.subplots()
    for i, d in enumerate(results):
        color, fit = f"C{i % 10}", d.fit
        batches = sorted(d.timings)
        ax.plot(
            [b for b in batches for _ in d.timings[b]],
            [t * 1e3 for b in batches for t in d.timings[b]],
            ".",
            ms=3,
            alpha=0.5,
            color=color,
        )
        ax.plot(batches, [statistics.median(d.timings[b]) * 1e3 for b in batches], "o", ms=6, color=color)
        span = d.fitted_batches
        if batches[-1] > span[-1]:  # the line beyond the batches it was fitted to: dotted
            xs = np.logspace(np.log10(span[-1]), np.log10(batches[-1]), 50)
            ax.plot(xs, [fit.at(x) * 1e3 for x in xs], ":", lw=1.2, color=color)
        xs = np.logspace(np.log10(span[0]), np.log10(span[-1]), 100)
        ax.plot(
            xs,
            [fit.at(x) * 1e3 for x in xs],
            "-",
            lw=1.5,
            color=color,
            label=f"{d.model}, {d.threads} thread{'s' * (d.threads != 1)}: {fit.fixed_s * 1e3:.3f} ms + "
            f"{fit.per_sample_s * 1e6:.2f} us x batch; {bound_label(d.binds)} at batch {d.batch_size}"
            + ("" if d.stability.stable else " (unstable)"),
        )
        if fit.fixed_s > 0:
            ax.axhline(fit.fixed_s * 1e3, color=color, ls="--", lw=0.8)
        ax.axvline(d.batch_size, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        plain_log_labels(axis)
    ax.set_xlabel("batch size (dotted: the cell's batch)")
    ax.set_ylabel("ms per training step")
    machine = "; ".join(dict.fromkeys(d.machine.split(" (")[0] for d in results))
    ax.set_title(plain_text(f"A step's fixed part and per-sample part, measured on {machine}"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return _finish(fig, out)


@overload
def plot_label_histogram(classes: Sequence[str], train: Sequence[int], test: Sequence[int], out: Path) -> Path: ...
@overload
def plot_label_histogram(
    classes: Sequence[str], train: Sequence[int], test: Sequence[int], out: None = None
) -> Figure: ...


@literal_text
def plot_label_histogram(
    classes: Sequence[str], train: Sequence[int], test: Sequence[int], out: Path | None = None
) -> Path | Figure:
    """How many training and test samples carry each label."""
    fig = InlineFigure(figsize=(8, 3.6))
    ax = fig.subplots()
    xs = range(len(classes))
    ax.bar([x - 0.2 for x in xs], train, width=0.4, label="train")
    ax.bar([x + 0.2 for x in xs], test, width=0.4, label="test")
    ax.set_xticks(list(xs), list(classes))
    ax.set_xlabel("label")
    ax.set_ylabel("samples")
    ax.set_title("Label histogram")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _finish(fig, out)


@overload
def plot_samples(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], out: Path, n: int = 32) -> Path: ...
@overload
def plot_samples(
    images: np.ndarray, labels: np.ndarray, classes: Sequence[str], out: None = None, n: int = 32
) -> Figure: ...


@literal_text
def plot_samples(
    images: np.ndarray, labels: np.ndarray, classes: Sequence[str], out: Path | None = None, n: int = 32
) -> Path | Figure:
    """A grid of the first `n` images (uint8, (N, H, W)) titled with their labels."""
    n = min(n, len(images))
    cols = min(8, n)
    rows = -(-n // cols)
    size = 2.6 if n == 1 else 1.3  # a single sample is shown large
    fig = InlineFigure(figsize=(size * cols, size * 1.15 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(
                f"{int(labels[i])}: {classes[int(labels[i])]}"
                if classes[int(labels[i])] != str(int(labels[i]))
                else str(int(labels[i])),
                fontsize=8,
            )
    return _finish(fig, out)


def _finish(fig: Figure, out: Path | None) -> Path | Figure:
    """The figure written to `out`, or the figure itself when no path is given."""
    return fig if out is None else save_figure(fig, out)


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    return buf.getvalue()


def save_figure(fig: Figure, out: Path) -> Path:
    """Write the PNG atomically, with the usual file mode; never create directories (a typo in
    --out must not leave folders behind): a missing folder is a one-line error."""
    out = Path(out)
    if not out.parent.is_dir():
        raise StorageError(f"{out.parent}: no such directory (create it first, or choose another --out)")
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise ConfigError(f"{out}: cannot write a .{fmt} figure (use .png, .svg or .pdf)")
    FILES.bytes(out, figure_bytes(fig, fmt))
    return out

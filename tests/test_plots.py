"""Figures as a student sees them: tick labels in plain numbers, and the user's matplotlib backend left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_decomposition
from matplotlib.figure import Figure

from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import METRIC_FIELDS, RunDir
from mnistlab.core.writer import FILES
from mnistlab.measure.bench import PHASES, BenchResult, Cell
from mnistlab.measure.sweeps import TrialRow
from mnistlab.report import plots
from mnistlab.report.sections import sweep
from mnistlab.training.config import TrainConfig


def _run(path: Path, losses: list[float], sessions: list[int]) -> RunDir:
    """A run directory with one metrics row per loss (validation a little above training)."""
    path.mkdir(parents=True)
    FILES.json(path / "config.json", TrainConfig(model="mlp", device="cpu").to_dict())
    rows = [
        {
            "epoch": i + 1,
            "train_loss": loss,
            "val_loss": 1.1 * loss,
            "val_accuracy": 0.9,
            "train_seconds": 1.0,
            "val_seconds": 0.1,
            "epoch_seconds": 1.1,
            "samples_per_s": 1000,
            "steps": 10,
            "global_step": 10 * (i + 1),
            "session": s,
        }
        for i, (loss, s) in enumerate(zip(losses, sessions, strict=True))
    ]
    FILES.csv(path / "metrics.csv", METRIC_FIELDS, rows)
    return RunDir(path)


def _bench() -> BenchResult:
    cells = [
        Cell(
            "mlp",
            "cpu",
            p,
            "eager",
            64,
            10,
            2,
            100,
            False,
            [0.010, 0.011],
            [0.05, 0.01],
            dict.fromkeys(PHASES, 0.002),
            0.011,
            1_000_000,
            1e10,
        )
        for p in ("reference", "resident")
    ]
    return BenchResult(cells, {"cpu": 1e10}, {"cpu": "a CPU"}, {"warmup": 2, "repeats": 2})


@pytest.fixture
def tick_labels(monkeypatch) -> dict[str, list[str]]:
    """Every tick label (major and minor) of every figure saved while the test runs, by file name
    and axis scale: {'loss.png log': [...], 'loss.png linear': [...], ...}."""
    seen: dict[str, list[str]] = {}
    save = plots.save_figure

    def keep(fig, out):
        fig.draw_without_rendering()  # places the ticks and writes their labels, as saving does
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                texts = [t.get_text() for t in axis.get_ticklabels(which="both")]
                seen.setdefault(f"{Path(out).name} {axis.get_scale()}", []).extend(texts)
        return save(fig, out)

    monkeypatch.setattr(plots, "save_figure", keep)
    return seen


# losses within one decade (minor ticks labelled: where '6x10^-1' showed) and over four decades
@pytest.mark.parametrize("losses", [[0.9, 0.7, 0.6, 0.5, 0.45], [2.3, 0.4, 0.05, 0.004, 0.0008]])
@pytest.mark.slow
def test_tick_labels_are_plain_numbers(tmp_path, tick_labels, losses):
    one = _run(tmp_path / "a", losses, [1, 1, 1, 2, 2])
    two = _run(tmp_path / "$b$", [2 * x for x in losses], [1] * 5)
    plots.plot_runs([one], tmp_path / "loss.png")
    plots.plot_runs([one, two], tmp_path / "compare.png", upto_epoch=4)
    plots.plot_epoch_times([one, two], tmp_path / "times.png")
    plots.plot_bench(_bench(), tmp_path / "bench.png")
    plots.plot_label_histogram([str(i) for i in range(10)], [60] * 10, [10] * 10, tmp_path / "labels.png")
    plots.plot_samples(
        np.zeros((3, 28, 28), np.uint8), np.array([0, 1, 2]), [str(i) for i in range(10)], tmp_path / "samples.png"
    )
    trials = [
        TrialRow(i, "complete", {"lr": lr}, v, 0.9, 2, 1.0, None)
        for i, (lr, v) in enumerate([(1e-3, 0.4), (1e-2, 0.2), (1e-1, 0.3)])
    ]
    sweep.plot_objective(
        {
            "params": [{"name": "lr", "log": True, "choices": None}],
            "objective": "val_loss",
            "study": "s",
            "direction": "minimize",
        },
        trials,
        tmp_path / "sweep.png",
    )
    assert {k for k in tick_labels if k.endswith(" log")} == {"loss.png log", "compare.png log", "sweep.png log"}
    for key, labels in tick_labels.items():
        assert not [t for t in labels if "$" in t or "\\mathdefault" in t], (key, labels)
        if key.endswith(" log"):  # labelled, in numbers a student reads: 0.6, 2, 0.05
            assert [float(t) for t in labels if t], (key, labels)


def test_the_roofline_has_plain_tick_labels_and_every_step_on_it(tmp_path, tick_labels):
    from mnistlab.measure.gpus import GPUS

    cells = [
        Cell(
            m,
            "cpu",
            "resident",
            "eager",
            64,
            10,
            2,
            100,
            False,
            [s, s],
            [0.05, 0.01],
            dict.fromkeys(PHASES, 0.002),
            s,
            flops,
            1e11,
            nbytes,
            ops,
            3.8e10,
            2e-6,
        )
        for m, s, flops, nbytes, ops in (
            ("mlp", 0.0006, 29_081_600, 4_088_368, 59),
            ("cnn", 0.034, 2_835_726_336, 118_206_640, 85),
        )
    ]
    bench = BenchResult(cells, {"cpu": 1e11}, {"cpu": "a CPU"}, {"warmup": 2, "repeats": 2})
    fig = plots.plot_roofline(bench, GPUS["H100 SXM"])
    ax = fig.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    texts = [t.get_text() for t in ax.texts]
    # a bench.json without decompositions: the floors' verdict, and one CPU roof at DRAM bandwidth
    assert {
        "mlp: measured here, bound by arithmetic",
        "cnn: measured here, bound by arithmetic",
        "mlp: predicted, launch-bound",
        "cnn: predicted, launch-bound",
    } == set(texts)
    assert [t.get_text() for t in ax.get_legend().get_texts()][0].startswith("this CPU, measured; DRAM bandwidth")
    # measured: the MLP's step mostly fixed, its working set in the L2; the CNN's bound by arithmetic, beyond the
    # caches. Each point says its judgement, and the CPU has one roof per working set
    decomposed = BenchResult(
        cells,
        {"cpu": 1e11},
        {"cpu": "a CPU"},
        {"warmup": 2, "repeats": 2},
        decompositions=[
            fake_decomposition("mlp", 0.35e-3, 3.6e-6, footprint=900_000),
            fake_decomposition(
                "cnn", 0.3e-3, 500e-6, flops_per_sample=44_000_000, bytes_per_sample=1_800_000, footprint=2**25
            ),
        ],
    )
    ax = plots.plot_roofline(decomposed, GPUS["H100 SXM"]).axes[0]
    assert {"mlp: measured here, bound by its fixed per-step cost", "cnn: measured here, bound by arithmetic"} <= {
        t.get_text() for t in ax.texts
    }
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("this CPU, measured; L2 bandwidth (the mlp's working set): 100 GFLOP/s, 200 GB/s")
    assert legend[1].startswith("this CPU, measured; DRAM bandwidth (the cnn's working set)")
    plots.plot_roofline(bench, GPUS["H100 SXM"], tmp_path / "roofline.png")
    for scale in ("roofline.png log",):
        labels = [t for t in tick_labels[scale] if t]
        assert labels and not [t for t in labels if "$" in t or "\\mathdefault" in t or "e+" in t], labels
        assert [float(t) for t in labels] and "100000" in labels, labels
    with pytest.raises(ConfigError, match="no counted training step"):
        plots.plot_roofline(_bench(), GPUS["H100 SXM"])


@pytest.mark.slow
def test_importing_plots_leaves_the_backend_alone(tmp_path):
    """A notebook user's backend (here 'svg', which needs no display) stays theirs, and drawing a
    figure leaves no pyplot figure open."""
    code = (
        "import matplotlib, matplotlib.pyplot as plt\n"
        "before = matplotlib.get_backend()\n"
        "from mnistlab.report.plots import plot_label_histogram\n"
        f"plot_label_histogram(['0', '1'], [3, 4], [1, 2], __import__('pathlib').Path({str(tmp_path)!r}) / 'h.png')\n"
        "print(before, matplotlib.get_backend(), plt.get_fignums())\n"
    )
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(Path(plots.__file__).parents[2])}  # this source tree
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "svg", "[]"], out
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_epoch_times_legend_claims_cold_only_when_measured_and_marks_busy_epochs(tmp_path, monkeypatch):
    """A first epoch is 'first', not 'cold', unless its session's warm-up was timed apart; an epoch
    measured while the load average exceeded the cores gets its own mark."""
    legends = []
    save = plots.save_figure

    def keep(fig, out):
        legends.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return save(fig, out)

    monkeypatch.setattr(plots, "save_figure", keep)
    run = _run(tmp_path / "a", [0.5, 0.4, 0.3], [1, 1, 1])
    plots.plot_epoch_times([run], tmp_path / "plain.png")
    assert "first epoch of a session" in legends and not [t for t in legends if "cold" in t or "busy" in t]
    rows = run.metrics()
    rows[0].update(warmup_s=1.25)
    rows[1].update(load_1m=3.7, cpu_count=2)
    FILES.csv(run / "metrics.csv", METRIC_FIELDS, rows)
    legends.clear()
    plots.plot_epoch_times([run], tmp_path / "marked.png")
    assert "first epoch of a session (after a cold start of 1.25 s, timed apart)" in legends
    assert "measured while the machine was busy" in legends


def test_without_a_path_a_figure_comes_back_that_shows_inline_and_saves(tmp_path):
    """A notebook's way: no file is written, the figure displays as a PNG (IPython's _repr_png_, no
    pyplot needed) and savefig still works."""
    run = _run(tmp_path / "a", [0.9, 0.5, 0.3], [1, 1, 2])
    figures = [
        plots.plot_runs([run]),
        plots.plot_epoch_times([run]),
        plots.plot_bench(_bench()),
        plots.plot_label_histogram(["0", "1"], [3, 4], [1, 2]),
        plots.plot_samples(np.zeros((2, 28, 28), np.uint8), np.array([0, 1]), ["0", "1"]),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    figures[0].savefig(tmp_path / "again.svg")
    assert (tmp_path / "again.svg").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "again.svg"]


def test_a_categorical_sweep_axis_is_in_the_spaces_order(tmp_path, tick_labels):
    """Trials drew 128 first, then 32: the axis still reads 32, 64, 128 (the space's order), not first-seen."""
    trials = [
        TrialRow(i, "complete", {"batch_size": b}, v, 0.9, 2, 1.0, None)
        for i, (b, v) in enumerate([(128, 0.4), (32, 0.2), (128, 0.3)])
    ]
    sweep.plot_objective(
        {
            "params": [{"name": "batch_size", "log": False, "choices": [32, 64, 128]}],
            "objective": "val_loss",
            "study": "s",
            "direction": "minimize",
        },
        trials,
        tmp_path / "sweep.png",
    )
    assert tick_labels["sweep.png linear"][:3] == ["32", "64", "128"]  # the x axis's labels come first


@pytest.mark.parametrize(
    "lrs, want, not_want",
    [
        ([0.002, 0.01, 0.05], {"0.002", "0.005", "0.01", "0.02", "0.05"}, {"0.003", "0.004", "0.006"}),  # 1.4 decades
        ([1e-4, 0.3], {"0.0001", "0.001", "0.01", "0.1"}, {"0.0002", "0.0005", "0.002", "0.005"}),  # 3.5: decades only
    ],
)
def test_a_horizontal_log_axis_labels_no_more_than_fits(tmp_path, tick_labels, lrs, want, not_want):
    """'0.002 0.003 0.004' ran into each other in a sweep panel: on a horizontal log axis over 0.7 to 2
    decades only 2s and 5s are labelled between the decades, beyond 2 decades only the decades."""
    trials = [TrialRow(i, "complete", {"lr": lr}, 0.1 * i + 0.2, 0.9, 2, 1.0, None) for i, lr in enumerate(lrs)]
    sweep.plot_objective(
        {
            "params": [{"name": "lr", "log": True, "choices": None}],
            "objective": "val_loss",
            "study": "s",
            "direction": "minimize",
        },
        trials,
        tmp_path / "sweep.png",
    )
    shown = {t for t in tick_labels["sweep.png log"] if t}
    assert want <= shown and not (not_want & shown), shown


def test_two_runs_with_the_same_name_are_told_apart_and_each_resume_is_counted(tmp_path, monkeypatch):
    """Issue 28, item 4: `mnistlab plot A/mlp-cpu B/mlp-cpu` labels each run by the shortest ending of its path
    that tells it apart, and a run resumed twice has one legend entry that says so (not one entry for all runs)."""
    from mnistlab.cli import main

    legends: dict[str, list[list[str]]] = {}
    save = plots.save_figure

    def keep(fig, out):
        legends[Path(out).name] = [
            [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend() is not None
        ]
        return save(fig, out)

    monkeypatch.setattr(plots, "save_figure", keep)
    a = _run(tmp_path / "A" / "mlp-cpu", [0.9, 0.6, 0.4, 0.3, 0.25], [1, 1, 2, 2, 2])
    b = _run(tmp_path / "B" / "mlp-cpu", [1.0, 0.7, 0.5, 0.45, 0.4], [1, 1, 2, 2, 3])
    assert plots.run_labels([a, b]) == ["A/mlp-cpu", "B/mlp-cpu"]
    assert plots.run_labels([a, RunDir(tmp_path / "x" / "A" / "other")]) == ["mlp-cpu", "other"]
    out = Path(os.environ.get("MNISTLAB_LEGEND_PNG", tmp_path / "compare.png"))  # set it to look at the figure
    assert main(["plot", str(a.path), str(b.path), "--out", str(out)]) == 0
    loss, accuracy = legends[out.name]
    assert loss == [
        "A/mlp-cpu: train",
        "A/mlp-cpu: validation",
        "A/mlp-cpu: resumed here",
        "B/mlp-cpu: train",
        "B/mlp-cpu: validation",
        "B/mlp-cpu: resumed here (2 resumes)",
    ]
    assert accuracy == ["A/mlp-cpu", "B/mlp-cpu"]
    plots.plot_epoch_times([a, b], tmp_path / "times.png")
    (times,) = legends["times.png"]
    assert "A/mlp-cpu: resumed here" in times and "B/mlp-cpu: resumed here (2 resumes)" in times
    assert len(times) == len(set(times))  # no two entries alike
    plots.plot_runs([b], tmp_path / "one.png")
    assert "resumed here (2 resumes)" in legends["one.png"][0]

"""What a notebook shows for the objects users hold: a small HTML table, every user string escaped."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import pytest

from mnistlab.core.rundir import METRIC_FIELDS, RunDir
from mnistlab.core.writer import FILES
from mnistlab.jobs.evaluate import RunEvaluation
from mnistlab.measure.bench import PHASES, BenchResult, Cell
from mnistlab.measure.profiling import LayerProfile, ModelProfile, profile_model
from mnistlab.measure.speedrun import SpeedrunResult
from mnistlab.training.config import TrainConfig
from mnistlab.training.evaluation import EvalResult
from mnistlab.training.levers import Levers
from mnistlab.training.recipe import Recipe, SeedResult

HOSTILE = "<img src=x onerror=alert(1)>"  # a run name or a model spec is the user's text, not markup
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def _run(tmp_path: Path) -> RunDir:
    path = tmp_path / HOSTILE.replace("/", "_")
    path.mkdir()
    FILES.json(path / "config.json", TrainConfig(model="mlp", device="cpu", epochs=3).to_dict())
    FILES.json(path / "status.json", {"state": "completed"})
    FILES.json(path / "test.json", {"loss": 0.3, "accuracy": 0.9123, "correct": 9123, "total": 10000, "seconds": 1.0})
    rows = [
        {
            "epoch": 1,
            "train_loss": 0.5,
            "val_loss": 0.6,
            "val_accuracy": 0.875,
            "train_seconds": 1.0,
            "val_seconds": 0.1,
            "epoch_seconds": 1.1,
            "samples_per_s": 1000,
            "steps": 10,
            "global_step": 10,
            "session": 1,
        }
    ]
    FILES.csv(path / "metrics.csv", METRIC_FIELDS, rows)
    return RunDir(path)


def _eval() -> EvalResult:
    return EvalResult(
        loss=0.25,
        accuracy=0.9,
        correct=9,
        total=10,
        per_class_accuracy=[1.0, 0.8],
        confusion=[[5, 0], [1, 4]],
        seconds=0.5,
    )


def _bench() -> BenchResult:
    cells = [
        Cell(
            HOSTILE,
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


def _speedrun() -> SpeedrunResult:
    seeds = [SeedResult(s, 99.1 + s / 10, 9910, 10000, 3.0 + s, 2.5, 0.5, 0.3, 0.05) for s in range(2)]
    return SpeedrunResult(Recipe(model=HOSTILE), Levers(), "cpu", "a CPU", 99.0, 0.4, 60000, 10000, 1234, seeds)


def _profile() -> ModelProfile:
    layer = LayerProfile(HOSTILE, "Linear", [1, 10], 7850, 7840, 15680, 47040)
    return ModelProfile(HOSTILE, 1, 7850, 7850, 7840, 15680, 31360, 47040, [layer])


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: _run(tmp), ["mlp", "completed", "1 of 3", "87.50%", "91.23%"]),
        (lambda tmp: _eval(), ["90.00% (9 of 10)", "0.2500", "1: 80.0%"]),
        (
            lambda tmp: RunEvaluation(tmp / HOSTILE, HOSTILE, "mnist", "best", 3, "cpu", 500, ("0", "1"), _eval()),
            ["best.pt (epoch 3)", "the first 500", "90.00% (9 of 10)"],
        ),
        (lambda tmp: _profile(), ["7,850", "47,040", "what thop prints"]),
        (lambda tmp: _bench(), ["resident/cpu/", "10.500 (10.000", "6,095", "stable"]),
        (lambda tmp: _speedrun(), ["99.15% \u00b1 0.07 over 2 seeds", "2 of 2 reached 99%", "median 3.50 s"]),
    ],
    ids=["run", "eval", "run-evaluation", "profile", "bench", "speedrun"],
)
def test_rich_display_is_a_table_with_user_text_escaped(tmp_path, make, expected):
    held = make(tmp_path)
    page = held._repr_html_()
    assert page.startswith("<table>") and page.endswith("</table>")
    for text in expected:
        assert text in page, (text, page)
    assert HOSTILE not in page
    assert (ESCAPED in page) == (not isinstance(held, EvalResult))  # an EvalResult holds no names


def test_a_damaged_run_shows_its_problem_instead_of_failing(tmp_path):
    run = _run(tmp_path)
    (run / "config.json").write_text("[1, 2]")
    page = run._repr_html_()
    assert "problem" in page and "config.json" in page


def test_a_real_profile_displays(tmp_path):
    page = profile_model("mlp")._repr_html_()
    assert "109,386" in page and "fc1" in page


def test_progress_is_a_bar_only_where_it_redraws_in_place(monkeypatch):
    """In a kernel tqdm.auto is the widget bar when ipywidgets is installed; without it, tqdm.auto
    falls back to the text bar, whose every redraw would land in the cell ('\\r' spam): epoch lines then."""
    from tqdm.notebook import tqdm as widget_bar
    from tqdm.std import tqdm as text_bar

    from mnistlab.core import progress

    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or types.ModuleType("ipykernel"))
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a kernel's stderr is no terminal
    assert not progress.shown(text_bar)  # the runner asks with tqdm.auto's class
    assert progress.shown(type("auto", (widget_bar,), {}))

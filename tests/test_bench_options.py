"""Bench fixes (issue 20, item 3): every option checked before anything is measured, no combination
silently ignored, no duplicate cell, no single repeat called stable, no ratio without its range, and
scaling sentences that cannot contradict each other."""

import pytest

from mnistlab.cli import main
from mnistlab.measure import bench, levers_bench, scaling
from mnistlab.measure.levers_bench import ImplCell, LeversResult, format_table
from mnistlab.measure.scaling import ScalingCell, ScalingResult, format_scaling


@pytest.fixture
def nothing_measured(monkeypatch):
    def measured(*a, **k):
        raise AssertionError("measured before refusing")

    for module, name in ((bench, "run_bench"), (levers_bench, "run_levers_bench"), (scaling, "measure_scaling")):
        monkeypatch.setattr(module, name, measured)


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--models", "mlp", "mlp"], "--models names 'mlp' twice"),
        (["--implementations", "eager", "eager"], "--implementations names 'eager' twice"),
        (["--devices", "cpu", "cpu"], "--devices names 'cpu' twice"),
        (["--pipelines", "resident", "resident"], "--pipelines names 'resident' twice"),
        (["--nproc", "2", "--models", "mlp", "mlp"], "--models names 'mlp' twice"),
        (["--implementations", "eager", "--pipelines", "resident"], "drop --pipelines"),
        (["--nproc", "2", "--pipelines", "resident"], "cannot honour --pipelines"),
        (["--nproc", "2", "--warmup", "3"], "cannot honour --warmup"),
        (["--nproc", "2", "--data-dir", "somewhere"], "cannot honour --data-dir"),
        (["--nproc", "2", "--steps", "0"], "cannot honour --steps 0"),
        (["--nproc", "2", "--devices", "cpu", "cuda"], "cannot honour a second device"),
        (["--nproc", "3", "--batch-size", "64"], "must divide evenly over 3"),
        (["--nproc", "2", "--implementations", "eager"], "give one of them"),
    ],
)
def test_refused_in_one_line_before_measuring(tiny, capsys, nothing_measured, tmp_path, argv, said):
    assert main(["bench", "--dataset", "tiny", "--out", str(tmp_path / "b"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def _impl(impl: str, step_s: list[float]) -> ImplCell:
    return ImplCell(
        "mlp", "cpu", impl, impl, "float32", 64, 10, 0.1, step_s=step_s, train_step_flops=10**6, peak_flops_per_s=1e11
    )


def test_levers_ratios_are_stated_with_their_range():
    result = LeversResult(
        [_impl("eager", [2e-3, 2.2e-3, 2.1e-3]), _impl("channels-last", [1e-3, 1.2e-3, 1e-3])],
        {"cpu": {"float32": 1e11}},
        {"cpu": "a CPU"},
        {"repeats": 3},
    )
    row = next(ln for ln in format_table(result).splitlines() if "channels-last" in ln)
    assert "2.00x (1.83-2.10)" in row
    one = LeversResult(
        [_impl("eager", [2e-3]), _impl("channels-last", [1e-3])],
        {"cpu": {"float32": 1e11}},
        {"cpu": "a CPU"},
        {"repeats": 1},
    )
    text = format_table(one)
    assert "1 repeat, no range" in text and " stable" not in text.replace("unstable", "")


def _scaling(one: list[float], two: list[float], local: list[float]) -> ScalingResult:
    return ScalingResult(
        [ScalingCell("mlp", "cpu", 1, 64, one, one, 0), ScalingCell("mlp", "cpu", 2, 64, two, local, 10**6)]
    )


def test_scaling_sentences_cannot_contradict_each_other():
    # issue 20: 1 process disturbed (44 ms), 2 processes 1 ms of which 71% all-reduce: "44x faster ... large
    # enough to hide most of the exchange"
    result = _scaling([0.044, 0.045, 0.044], [0.001, 0.001, 0.001], [0.00029, 0.00029, 0.00029])
    text = format_scaling(result)
    assert "71% of each step is the all-reduce" in text
    assert "large enough to hide" not in text and "unstable" in text and "at most about 0.6x faster" in text
    _, _, ratio = result.speedups()[0]
    assert not ratio.stability.stable
    # a consistent measurement keeps its verdict: 20% exchange, 1.5x faster
    ok = format_scaling(_scaling([0.03, 0.03, 0.03], [0.02, 0.02, 0.02], [0.016, 0.016, 0.016]))
    assert "large enough to hide" in ok and "unstable" not in ok


def test_a_single_repeat_is_never_stable():
    result = _scaling([0.03], [0.02], [0.016])
    text = format_scaling(result)
    assert "1 repeat, no range" in text and "large enough to hide" not in text
    assert all(not c.stability.stable for c in result.cells)
    assert all(not r.stability.stable for _, _, r in result.speedups())

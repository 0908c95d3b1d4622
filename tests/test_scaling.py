"""The data-parallel scaling measurement runs 1 and 2 gloo processes and explains what it measured."""

from __future__ import annotations

import pytest

from mnistlab.core.errors import CheckpointError, ConfigError
from mnistlab.core.schema import read_result
from mnistlab.measure.scaling import ScalingCell, ScalingResult, format_scaling, measure_scaling, scaling_observations

pytestmark = pytest.mark.slow  # data-parallel process groups

QUIET = {"start": {"load_avg_1m": 0.5, "cpu_count": 2}, "end": {"load_avg_1m": 0.5, "cpu_count": 2}}


def _result(*cells: ScalingCell, load=QUIET) -> ScalingResult:
    for c in cells:
        c.load = load
    return ScalingResult(list(cells), load)


def test_one_against_two_processes_on_the_cpu():
    result = measure_scaling(["mlp"], "cpu", [1, 2], batch=64, steps=3, repeats=2)
    cells = result.cells
    assert [c.processes for c in cells] == [1, 2] and set(result.load) == {"start", "end"}
    for c in cells:
        assert len(c.step_s) == len(c.local_step_s) == 2 and all(t > 0 for t in c.step_s)
        assert c.gradient_bytes == 109_386 * 4  # the MLP's float32 parameters, all-reduced every step
    assert cells[0].communication_share == 0.0 and 0.0 <= cells[1].communication_share < 1.0
    text = format_scaling(result)
    assert "mlp on cpu: 2 processes against one" in text and "0.44 MB of gradients" in text


def test_observations_follow_the_numbers():
    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.010], [0.010, 0.010], 437_544)
    slow = ScalingCell("mlp", "cpu", 2, 64, [0.020, 0.020], [0.005, 0.005], 437_544)
    text = " ".join(scaling_observations(_result(one, slow)))
    assert (
        "2.0x slower (median of 2 paired ratios, 2.0\u20132.0x; ratio of the medians 2.0x)" in text
        and "75% of each step is the all-reduce" in text
    )
    assert "too little work" in text and "unstable" not in text
    noisy = ScalingCell("mlp", "cpu", 2, 64, [0.004, 0.008], [0.003, 0.003], 437_544)
    assert scaling_observations(_result(one, noisy))[0].startswith("mlp with 2 processes on cpu: unstable:")


@pytest.mark.parametrize(
    "one_s, two_s",
    [
        ([0.44], [0.01]),  # --repeats 1: "44x faster" from one repeat is no evidence
        ([0.44, 0.02], [0.01, 0.01]),  # a 22x spread between repeats (a busy machine)
    ],
)
def test_scaling_uses_the_one_stability_rule(one_s, two_s):
    one = ScalingCell("mlp", "cpu", 1, 64, one_s, one_s, 437_544)
    two = ScalingCell("mlp", "cpu", 2, 64, two_s, two_s, 437_544)
    result = _result(one, two)
    ((_, _, ratio),) = result.speedups()
    assert not ratio.stability.stable and not one.stability.stable
    line = next(n for n in scaling_observations(result) if "against one" in n)
    assert "faster" in line and "[unstable:" in line
    assert "unstable" in format_scaling(result).splitlines()[2]


def test_a_busy_machine_makes_scaling_unstable():
    busy = {"start": {"load_avg_1m": 5.0, "cpu_count": 2}, "end": None}
    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.010], [0.010, 0.010], 437_544)
    assert not _result(one, load=busy).cells[0].stability.stable


def test_batch_must_divide():
    with pytest.raises(ConfigError, match="divide evenly over 3 processes"):
        measure_scaling(["mlp"], "cpu", [3], batch=64)


def test_scaling_json_round_trips_and_rejects_a_malformed_file(tmp_path):
    from mnistlab.core.writer import FILES

    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.011], [0.010, 0.011], 437_544)
    result = _result(one, ScalingCell("mlp", "cpu", 2, 64, [0.020, 0.021], [0.005, 0.005], 437_544))
    FILES.json(tmp_path / "scaling.json", result.to_dict())
    assert read_result(ScalingResult, tmp_path).to_dict() == result.to_dict()
    data = result.to_dict()
    data["cells"][1]["processes"] = "two"
    FILES.json(tmp_path / "scaling.json", data)
    with pytest.raises(CheckpointError) as e:
        read_result(ScalingResult, tmp_path)
    assert str(tmp_path / "scaling.json") in str(e.value) and "processes" in str(e.value)
    assert "\n" not in str(e.value)


def test_the_report_shows_a_scaling_folder(tmp_path):
    from mnistlab.core.writer import FILES
    from mnistlab.report.builder import build_report

    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.011], [0.010, 0.011], 437_544)
    two = ScalingCell("mlp", "cpu", 2, 64, [0.020, 0.021], [0.005, 0.005], 437_544)
    FILES.json(tmp_path / "scaling.json", _result(one, two).to_dict())
    md, _ = build_report([tmp_path], tmp_path)
    text = md.read_text()
    assert "Data-parallel scaling" in text and "| mlp | cpu | 2 | 20.50 |" in text and "too little work" in text
    FILES.json(tmp_path / "scaling.json", {"cells": [{"model": "mlp"}], "observations": []})
    with pytest.raises(CheckpointError, match="scaling.json: field 'cells'\\[0\\]: missing the field 'device'"):
        build_report([tmp_path], tmp_path)

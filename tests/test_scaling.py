"""The data-parallel scaling measurement runs 1 and 2 gloo processes and explains what it measured."""

from __future__ import annotations

import pytest

from mnistlab.core.errors import ConfigError
from mnistlab.measure.scaling import ScalingCell, format_scaling, measure_scaling, scaling_observations


def test_one_against_two_processes_on_the_cpu():
    cells = measure_scaling("mlp", "cpu", [1, 2], batch=64, steps=3, repeats=2)
    assert [c.processes for c in cells] == [1, 2]
    for c in cells:
        assert len(c.step_s) == len(c.local_step_s) == 2 and all(t > 0 for t in c.step_s)
        assert c.gradient_bytes == 109_386 * 4  # the MLP's float32 parameters, all-reduced every step
    assert cells[0].communication_share == 0.0 and 0.0 <= cells[1].communication_share < 1.0
    text = format_scaling(cells)
    assert "mlp on cpu: 2 processes are" in text and "0.44 MB of gradients" in text


def test_observations_follow_the_numbers():
    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.010], [0.010, 0.010], 437_544)
    slow = ScalingCell("mlp", "cpu", 2, 64, [0.020, 0.020], [0.005, 0.005], 437_544)
    text = " ".join(scaling_observations([one, slow]))
    assert "2.00x slower" in text and "75% of each step is the all-reduce" in text and "too little work" in text
    noisy = ScalingCell("mlp", "cpu", 2, 64, [0.004, 0.008], [0.003, 0.003], 437_544)
    assert scaling_observations([one, noisy])[0].startswith("unstable: mlp with 2 process(es)")


def test_batch_must_divide():
    with pytest.raises(ConfigError, match="divide evenly over 3 processes"):
        measure_scaling("mlp", "cpu", [3], batch=64)


def test_the_report_shows_a_scaling_folder(tmp_path):
    from mnistlab.core.rundir import write_json
    from mnistlab.report.builder import build_report

    one = ScalingCell("mlp", "cpu", 1, 64, [0.010, 0.011], [0.010, 0.011], 437_544)
    two = ScalingCell("mlp", "cpu", 2, 64, [0.020, 0.021], [0.005, 0.005], 437_544)
    write_json(tmp_path / "scaling.json", {"cells": [one.to_dict(), two.to_dict()],
                                           "observations": scaling_observations([one, two])})
    md, _ = build_report([tmp_path], tmp_path)
    text = md.read_text()
    assert "Data-parallel scaling" in text and "| mlp | cpu | 2 | 20.50 |" in text and "too little work" in text
    write_json(tmp_path / "scaling.json", {"cells": [{"model": "mlp"}], "observations": []})
    with pytest.raises(Exception, match="malformed"):
        build_report([tmp_path], tmp_path)

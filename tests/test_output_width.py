"""Issue 28, item 3: terminal output people can scan. No line of a command's normal output is over 160 characters
(the lab's own lines are checked in tests/test_report.py, on the lab every report test shares)."""

from __future__ import annotations

import pytest

from mnistlab.cli import main
from mnistlab.measure.table import LINE_WIDTH, fit_width


def test_fit_width_wraps_long_lines_only():
    table = "a   b\n--- -\n1   2"
    assert fit_width(table) == table
    long = "  " + " ".join(["word"] * 60)
    wrapped = fit_width(long, 40).splitlines()
    assert len(wrapped) > 1 and all(len(x) <= 40 for x in wrapped) and wrapped[1].startswith("    word")
    assert " ".join(x.strip() for x in wrapped) == long.strip()


@pytest.mark.slow
def test_no_command_prints_a_line_over_160_characters(tiny, tmp_path, capsys):
    run, bench, speedrun = tmp_path / "run", tmp_path / "bench", tmp_path / "speedrun"
    commands = [
        ["env"],
        ["data", "info", "--dataset", "tiny"],
        ["data", "fetch", "--dataset", "tiny", "--no-web"],
        ["summary", "cnn"],
        ["profile", "mlp", "cnn"],
        ["train", "--dataset", "tiny", "--epochs", "2", "--run-dir", str(run), "--no-progress", "--no-tensorboard"],
        ["eval", str(run)],
        ["plot", str(run), "--out", str(tmp_path / "loss.png")],
        ["bench", "--dataset", "tiny", "--steps", "2", "--repeats", "2", "--warmup", "1", "--out", str(bench)],
        ["speedrun", "--dataset", "tiny", "--seeds", "2", "--out", str(speedrun)],
        ["report", str(run), str(bench), str(speedrun), "--out", str(tmp_path / "report")],
    ]
    too_long = []
    for argv in commands:
        capsys.readouterr()
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert out.strip(), argv
        too_long += [(argv[0], len(line), line[:80]) for line in out.splitlines() if len(line) > LINE_WIDTH]
    assert not too_long, too_long
    capsys.readouterr()
    main(["speedrun", "--dataset", "tiny", "--seeds", "3", "--out", str(tmp_path / "s3")])
    summary = capsys.readouterr().out.splitlines()
    # the speedrun's summary: what ran, then a small table (seeds, accuracy, p, time, floor, stability)
    assert summary[0].startswith("speedrun: ") and summary[1].split()[:3] == ["seeds", "reached", "99%"]
    assert set(summary[2]) == {"-"} and summary[3].split()[0] == "3" and summary[3].split()[1].endswith("/3")
    assert len(summary) <= 8 and all(len(x) <= LINE_WIDTH for x in summary), summary

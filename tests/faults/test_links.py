"""Output folders never follow a symbolic link: one planted inside a lab, a report's folder, a sweep or in place of a
run folder is refused in one line, and nothing is written where it points (core/atomicfile.py refuses to write
into a folder that is a link; jobs/folder.py refuses a run, trial or resumed folder that is one)."""

from __future__ import annotations

import json
import shutil

import pytest

from mnistlab.cli import main
from mnistlab.core.rundir import open_run
from tests.conftest import tiny_bench_argv, tiny_sweep_argv

from .conftest import one_line_error

TRAIN = ["train", "--dataset", "tiny", "--epochs", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished run (tests copy it)."""
    import contextlib
    import io

    from mnistlab.data import datasets
    from tests.conftest import write_tiny_dataset

    base = tmp_path_factory.mktemp("links")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "tiny", write_tiny_dataset(base / "data"))
        mp.setenv("MNISTLAB_DATA", str(base / "data"))
        with contextlib.redirect_stdout(io.StringIO()):
            assert main([*TRAIN, "--run-dir", str(base / "run")]) == 0
    return base / "run"


@pytest.fixture
def outside(tmp_path):
    (tmp_path / "outside").mkdir()
    return tmp_path / "outside"


def nothing_in(folder) -> bool:
    return not any(folder.iterdir())


@pytest.mark.parametrize("target", ["a folder", "nothing (dangling)"])
def test_a_link_planted_as_a_reports_figures_folder(trained, tiny, tmp_path, outside, capsys, reliability, target):
    lab = tmp_path / "lab"
    lab.mkdir()
    shutil.copytree(trained, lab / "mlp-cpu")
    (lab / "lab.json").write_text(json.dumps({"runs": ["mlp-cpu"]}))
    rep = tmp_path / "rep"
    rep.mkdir()
    for folder in (lab, rep):
        (folder / "figures").symlink_to(outside if target == "a folder" else tmp_path / "nowhere")
    for argv in (["report", str(lab)], ["report", str(trained), "--out", str(rep)]):
        line = one_line_error(capsys, argv)
        assert "figures: is a symbolic link" in line, line
    assert nothing_in(outside) and not (tmp_path / "nowhere").exists()
    assert not (lab / "report.md").exists() and not (rep / "report.md").exists()
    reliability.record(
        "Output folders follow no link",
        f"`figures/` of a lab and of a report's --out, a link to {target}",
        "clear error (exit 2, one line); nothing written where it points",
        trials=2,
    )


def test_a_link_given_or_planted_as_a_jobs_folder(trained, tiny, tmp_path, outside, capsys, reliability):
    linked = tmp_path / "linked"
    linked.symlink_to(outside)
    shutil.copytree(trained, tmp_path / "real")
    resumed = tmp_path / "resumed"
    resumed.symlink_to(tmp_path / "real")
    cases = {
        "train --run-dir": [*TRAIN, "--run-dir", str(linked)],
        "train --resume": ["train", "--resume", str(resumed), "--epochs", "1", "--no-progress"],
        "bench --out": tiny_bench_argv("mlp", linked),
        "speedrun --out": ["speedrun", "--dataset", "tiny", "--seeds", "1", "--device", "cpu", "--out", str(linked)],
        "plot --out": ["plot", str(trained), "--out", str(linked / "loss.png")],
    }
    for name, argv in cases.items():
        line = one_line_error(capsys, argv)
        assert "is a symbolic link" in line, (name, line)
    assert nothing_in(outside)
    real = open_run(tmp_path / "real")
    assert len(real.metrics()) == 1 and real.status()["state"] == "completed"
    reliability.record(
        "Output folders follow no link",
        "a link as train --run-dir, --resume, bench --out, speedrun --out, plot --out's folder",
        "clear error (exit 2, one line); nothing written through it; a resumed run is left as it was",
        trials=len(cases),
    )


@pytest.mark.slow
def test_a_link_planted_as_a_sweeps_trial_folder(tiny, tmp_path, outside, capsys, reliability):
    pytest.importorskip("optuna")
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "trial-0000").symlink_to(outside)
    argv = tiny_sweep_argv("--out", str(sweep))
    line = one_line_error(capsys, argv)
    assert "trial-0000: is a symbolic link" in line, line
    assert nothing_in(outside)
    assert json.loads((sweep / "status.json").read_text())["state"] == "failed"
    assert [t["state"] for t in json.loads((sweep / "trials.json").read_text())] == ["fail"]
    (sweep / "trial-0000").unlink()  # the link removed, the same command continues with the next trial
    assert main(argv) == 0
    assert (sweep / "trial-0001" / "test.json").is_file()
    reliability.record(
        "Output folders follow no link",
        "a sweep's `trial-0000` planted as a link",
        "clear error (exit 2, one line), the trial `fail`; nothing written where it points; the "
        "same command continues once it is removed",
    )

"""A user's model that changes the working directory (at import, when built, in its forward pass) moves none of
a job's reads or writes: every path is absolute and fixed as the job starts (jobs/folder.py `fixed`,
data/datasets.py `data_root`), so the run folder, its lock, checkpoints, TensorBoard files, loss.png and
test.json stay where the command said, relative paths included, and nothing appears where the model went."""

from __future__ import annotations

import json

import pytest

from mnistlab.core.rundir import open_run
from tests.conftest import tiny_bench_argv, tiny_sweep_argv

from .conftest import is_one_line_error, make_tiny_env, mnistlab

pytestmark = pytest.mark.slow  # real training processes

# a model that moves the process elsewhere: CHDIR_AT says when (import, init, forward), CHDIR_AFTER how many
# forward passes it first lets through (its build check and a few steps), CHDIR_TO where
NET = """import os
from torch import nn

def _move():
    os.chdir(os.environ["CHDIR_TO"])

if os.environ.get("CHDIR_AT") == "import":
    _move()

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))
        self.calls = 0
        if os.environ.get("CHDIR_AT") == "init":
            _move()

    def forward(self, x):
        self.calls += 1
        if os.environ.get("CHDIR_AT") == "forward" and self.calls > int(os.environ.get("CHDIR_AFTER", "0")):
            _move()
        return self.fc(x)
"""
TRAIN = ["train", "--dataset", "tiny", "--epochs", "1", "--device", "cpu", "--no-progress", "--model", "net.py:Net"]


@pytest.fixture
def moving(tmp_path):
    """The tiny data under a relative $MNISTLAB_DATA, the model file, and the folder the model moves to."""
    env = make_tiny_env(tmp_path)
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "elsewhere").mkdir()
    env["env"].update(MNISTLAB_DATA="data", CHDIR_TO=str(tmp_path / "elsewhere"))
    return env


def run_in(env, args, cwd, **extra):
    return mnistlab(args, {**env["env"], **extra}, cwd=cwd)


@pytest.mark.parametrize("when", ["import", "init", "forward"])
def test_a_model_that_changes_directory_moves_no_write(moving, reliability, when):
    tmp = moving["tmp"]
    p = run_in(moving, [*TRAIN, "--run-dir", "r"], tmp, CHDIR_AT=when)
    assert p.returncode == 0, p.stderr[-800:]
    run = open_run(tmp / "r")
    assert run.status()["state"] == "completed" and run.test() is not None
    assert {"config.json", "last.pt", "best.pt", "metrics.csv", "test.json", "loss.png", ".lock"} <= {
        f.name for f in (tmp / "r").iterdir()
    }
    assert any((tmp / "r").glob("events.out.tfevents.*")) or "tensorboard" in p.stdout.lower()
    assert p.stdout.strip().splitlines()[-1] == str(tmp / "r")
    # resumed, evaluated, and the run's files drawn into a report, each with the model moving again
    p = run_in(moving, ["train", "--resume", "r", "--epochs", "1", "--no-progress"], tmp, CHDIR_AT=when)
    assert p.returncode == 0, p.stderr[-800:]
    assert len(open_run(tmp / "r").metrics()) == 2
    p = run_in(moving, ["eval", "r", "--json"], tmp, CHDIR_AT=when)
    assert p.returncode == 0 and json.loads(p.stdout)["epoch"] == 2, p.stderr[-800:]
    p = run_in(moving, ["report", "r", "--out", "rep"], tmp, CHDIR_AT=when)
    assert p.returncode == 0 and (tmp / "rep" / "report.md").is_file(), p.stderr[-800:]
    assert list((tmp / "elsewhere").iterdir()) == []
    reliability.record(
        "The run folder: a model that changes the working directory",
        f"`os.chdir` at the model's {when}, relative --run-dir and $MNISTLAB_DATA: train, resume, eval, report",
        "every file in the folder the command named; nothing where the model went",
        trials=4,
    )


def test_a_model_that_moves_to_a_missing_folder_fails_in_its_own_folder(moving, reliability):
    tmp = moving["tmp"]
    p = run_in(
        moving, [*TRAIN, "--run-dir", "r"], tmp, CHDIR_AT="forward", CHDIR_AFTER="3", CHDIR_TO=str(tmp / "missing")
    )
    assert is_one_line_error(p) and "missing: No such file or directory (during training)" in p.stderr, p.stderr
    status = open_run(tmp / "r").status()
    assert status["state"] == "failed" and "missing: No such file or directory" in status["message"]
    reliability.record(
        "The run folder: a model that changes the working directory",
        "`os.chdir` to a folder that does not exist, mid-epoch",
        "clear error (exit 2, one line); status `failed` in the run's own folder",
    )


def test_bench_and_a_sweep_stay_in_their_folders(moving, reliability):
    pytest.importorskip("optuna")
    tmp = moving["tmp"]
    p = run_in(
        moving,
        tiny_bench_argv("net.py:Net", "b"),
        tmp,
        CHDIR_AT="forward",
    )
    # the bench builds the model again for each cell: a relative spec then names a file where the model went,
    # which is said in one line; either way its folder is where --out said, and nothing is written elsewhere
    assert p.returncode == 0 or (is_one_line_error(p) and "elsewhere/net.py: no such file" in p.stderr), p.stderr
    if p.returncode == 0:
        assert (tmp / "b" / "bench.json").is_file()
    else:
        assert json.loads((tmp / "b" / "status.json").read_text())["state"] == "failed"
    p = run_in(
        moving,
        tiny_sweep_argv("--model", "net.py:Net", "--out", "sw", trials=2),
        tmp,
        CHDIR_AT="forward",
    )
    assert p.returncode == 0, p.stderr[-800:]
    made = {f.name for f in (tmp / "sw").iterdir()}
    assert {"trial-0000", "trial-0001", "sweep.json", "trials.json", "study.db"} <= made
    assert list((tmp / "elsewhere").iterdir()) == []
    reliability.record(
        "The run folder: a model that changes the working directory",
        "`os.chdir` in the forward pass of `bench --models` and of a sweep's trials, relative --out",
        "every file in the folder the command named; nothing where the model went",
        trials=2,
    )

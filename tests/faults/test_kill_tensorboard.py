"""TensorBoard after kill -9 and --resume: what TensorBoard shows is exactly the CSVs' values, every step
once, at every stage of a run that is killed, resumed, killed again and resumed past its end. Each stage
leaves the event files in a state a resume must undo: events written ahead of the checkpoint, a resume
killed before it wrote any event of its own, a completed run's test result at what is no longer its
last step. Two readers: EventAccumulator (TensorBoard's Python loader) and the Rust data server that
`tensorboard --logdir` uses by default. The second is why tblog.py rewrites the event files instead of
using SummaryWriter(purge_step=...): it ignores purge_step's marker (see tblog.py)."""

from __future__ import annotations

import shutil
import signal

import pytest

from mnistlab.core.rundir import open_run
from mnistlab.training.checkpoint import load_checkpoint
from tests.tbcheck import (
    assert_events_match_run,
    data_server_available,
    expected_scalars,
    f32,
    read_scalars,
    served_scalars,
)

from .conftest import make_tiny_env, mnistlab

pytestmark = pytest.mark.slow  # training processes, killed and resumed; a TensorBoard server

# the tiny data: 8 steps per epoch; --log-every 2: the train loss at steps 1, 3, 5, 7 of each epoch
TRAIN = ["train", "--dataset", "tiny", "--epochs", "3", "--device", "cpu", "--no-progress", "--log-every", "2"]
STAGES = [
    "1-killed-ahead-of-its-checkpoint",
    "2-resume-killed-before-its-events",
    "3-resumed-to-the-end",
    "4-completed-and-resumed",
]


def steps(scalars: dict, tag: str) -> list[int]:
    return [s for s, _ in scalars.get(tag, [])]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """The run after each stage, copied into logs/STAGE (each a run of its own for TensorBoard)."""
    tmp = tmp_path_factory.mktemp("tensorboard-resume")
    env, run_dir, logs = make_tiny_env(tmp)["env"], tmp / "run", tmp / "logs"
    commands = [
        ([*TRAIN, "--run-dir", str(run_dir)], "write:last.pt:2"),  # epoch 2's events on disk, its last.pt not
        (["train", "--resume", str(run_dir), "--no-progress"], "epoch-end:1"),  # trained epoch 2 again, unsaved
        (["train", "--resume", str(run_dir), "--no-progress"], None),
        (["train", "--resume", str(run_dir), "--epochs", "1", "--no-progress"], None),
    ]
    for stage, (args, kill_at) in zip(STAGES, commands, strict=True):
        p = mnistlab(args, env, kill_at=kill_at)
        assert p.returncode == (-signal.SIGKILL if kill_at else 0), (stage, p.stderr[-800:])
        shutil.copytree(run_dir, logs / stage)
    return logs


def test_each_stage_leaves_what_a_resume_must_undo(stages):
    first = stages / STAGES[0]
    assert load_checkpoint(first / "last.pt")["epoch"] == 1 and steps(read_scalars(first), "val/loss") == [8, 16]
    assert [r["epoch"] for r in open_run(stages / STAGES[1]).metrics()] == [1]
    assert [open_run(stages / s).status()["state"] for s in STAGES[2:]] == ["completed", "completed"]


@pytest.mark.parametrize("stage", STAGES[1:])
def test_the_python_reader_sees_the_csvs(stages, stage):
    scalars = assert_events_match_run(stages / stage)
    assert steps(scalars, "val/loss") == {STAGES[1]: [8], STAGES[2]: [8, 16, 24], STAGES[3]: [8, 16, 24, 32]}[stage]
    assert steps(scalars, "test/loss") == {STAGES[1]: [], STAGES[2]: [24], STAGES[3]: [32]}[stage]


@pytest.mark.skipif(not data_server_available(), reason="TensorBoard's Rust data server is not installed here")
def test_tensorboards_default_server_sees_the_csvs(stages):
    served = served_scalars(stages, STAGES[1:])
    for stage in STAGES[1:]:
        shown = {tag: [(s, f32(v)) for s, v in series] for tag, series in served[stage].items()}
        assert shown == expected_scalars(stages / stage), stage

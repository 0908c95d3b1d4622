"""Restarts that continue: --checkpoint-every writes mid-epoch checkpoints, and the same command rerun with
--resume-if-exists (a requeued batch job), or a group restarted by torchrun --max-restarts, continues the run
from its last one. Killed with SIGKILL at any step, the run ends exactly as an uninterrupted one: metrics.csv,
steps.csv, TensorBoard and the final weights; a kill costs at most STEPS steps."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from mnistlab.core.rundir import open_run
from mnistlab.training.checkpoint import load_checkpoint
from tests.tbcheck import assert_events_match_run

from .conftest import background, in_background, is_one_line_error, make_tiny_env, mnistlab, popen

pytestmark = pytest.mark.slow  # every test kills and restarts real training processes

EVERY = 3  # 8 steps per epoch on the tiny data: checkpoints after steps 3 and 6 of each epoch
TRAIN = [
    "train",
    "--dataset",
    "tiny",
    "--epochs",
    "3",
    "--deterministic",
    "--device",
    "cpu",
    "--no-progress",
    "--log-every",
    "1",
]
SAME_COMMAND = [*TRAIN, "--checkpoint-every", str(EVERY), "--resume-if-exists"]
COMPARED = ["epoch", "train_loss", "val_loss", "val_accuracy", "steps", "global_step"]


def final(run_path) -> tuple:
    run = open_run(run_path)
    weights = load_checkpoint(run_path / "last.pt")["model"]
    return (
        [{k: r[k] for k in COMPARED} for r in run.metrics()],
        run.steps(),
        run.test()["confusion"],
        {k: v.tolist() for k, v in weights.items()},
    )


def position(run_path) -> int:
    """The global step that last.pt holds."""
    state = load_checkpoint(run_path / "last.pt")
    return state["global_step"] + (state["partial"]["steps"] if state.get("partial") else 0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, without mid-epoch checkpoints (they change nothing), and its duration."""
    env = make_tiny_env(tmp_path_factory.mktemp("reference"))
    t0 = time.perf_counter()
    p = mnistlab([*TRAIN, "--run-dir", str(env["tmp"] / "run")], env["env"])
    assert p.returncode == 0, p.stderr
    return final(env["tmp"] / "run"), time.perf_counter() - t0


# (kill point, the global step last.pt holds once killed): right after a mid-epoch checkpoint (nothing lost),
# half-way through writing one (the previous one kept: EVERY steps lost), and in epoch 2
KILLS = {"step-checkpoint:1": 3, "write:last.pt:2": 3, "step-checkpoint:3": 11, "write:last.pt:5": 11}


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_mid_epoch_then_the_same_command_continues_exactly(tiny_env, reference, reliability, point):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    p = mnistlab([*SAME_COMMAND, "--run-dir", str(run_dir)], env, kill_at=point)
    assert p.returncode == -signal.SIGKILL, (point, p.stderr[-500:])
    assert position(run_dir) == KILLS[point]
    p = mnistlab([*SAME_COMMAND, "--run-dir", str(run_dir)], env)
    assert p.returncode == 0, p.stderr[-1500:]
    assert f"and {KILLS[point] % 8} steps of epoch" in p.stdout
    assert final(run_dir) == reference[0]
    assert_events_match_run(run_dir)
    reliability.record(
        "Killed with SIGKILL, then the same command (--resume-if-exists, --checkpoint-every 3)",
        f"at `{point}`",
        "continues mid-epoch; metrics, steps, TensorBoard and weights equal an uninterrupted run's",
    )


@pytest.mark.parametrize("seed", range(2))
def test_kill_at_a_random_moment_costs_at_most_steps(tiny_env, reference, reliability, seed):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    proc = popen([*SAME_COMMAND, "--run-dir", str(run_dir)], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(0.3, 1.0) * reference[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = mnistlab([*SAME_COMMAND, "--run-dir", str(run_dir)], env)
    assert p.returncode == 0, p.stderr[-1500:]
    assert final(run_dir) == reference[0]
    assert_events_match_run(run_dir)
    reliability.record(
        "Killed with SIGKILL, then the same command (--resume-if-exists, --checkpoint-every 3)",
        "at a random moment (seeded)",
        "nothing lost beyond the last checkpoint; equals an uninterrupted run",
    )


def test_start_or_resume_refuses_another_configuration_and_leaves_a_completed_run(tiny_env, reliability):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    args = [*SAME_COMMAND, "--epochs", "1", "--run-dir", str(run_dir)]
    assert mnistlab(args, env).returncode == 0
    before = (run_dir / "last.pt").read_bytes()
    p = mnistlab(args, env)
    assert p.returncode == 0 and "already completed; nothing to do" in p.stdout
    p = mnistlab([*args, "--lr", "0.1"], env)
    assert is_one_line_error(p) and "holds a run with lr=0.01, this command has lr=0.1" in p.stderr
    assert (run_dir / "last.pt").read_bytes() == before and open_run(run_dir).status()["state"] == "completed"
    p = mnistlab([*SAME_COMMAND], env)
    assert is_one_line_error(p) and "needs --run-dir" in p.stderr
    reliability.record(
        "Start or resume (--resume-if-exists)",
        "another configuration; a completed run; no --run-dir",
        "one line, nothing touched; a completed run is left as it is (exit 0)",
    )


def torchrun_restarting(args: list[str], env: dict) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "--max-restarts",
            "1",
            "-m",
            "mnistlab",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return p


@in_background
def torchrun_killed_and_restarted(tmp):
    """2 processes under torchrun --max-restarts 1, with and without rank 0 killed (SIGKILL) half-way through
    its second mid-epoch checkpoint: torchrun restarts the group, which continues from the first."""
    env = make_tiny_env(tmp)["env"]
    args = [
        *TRAIN,
        "--checkpoint-every",
        str(EVERY),
        "--dist-timeout",
        "30",
    ]  # no --resume-if-exists: --max-restarts implies it
    whole = torchrun_restarting([*args, "--run-dir", str(tmp / "whole")], env)
    killed = torchrun_restarting(
        [*args, "--run-dir", str(tmp / "killed")], {**env, "MNISTLAB_KILL_AT": "write:last.pt:2"}
    )
    return tmp, whole, killed


def test_torchrun_restart_continues_the_run_exactly(reliability):
    tmp, whole, killed = background(torchrun_killed_and_restarted)
    assert whole.returncode == 0, whole.stderr[-1500:]
    assert killed.returncode == 0, killed.stderr[-3000:]
    assert "resuming" in killed.stdout and "and 3 steps of epoch 1" in killed.stdout
    assert final(tmp / "killed") == final(tmp / "whole")
    assert_events_match_run(tmp / "killed")
    reliability.record(
        "Data parallel (torchrun, gloo, 2 CPU processes)",
        "rank 0 killed (SIGKILL) mid-epoch under --max-restarts 1",
        "the restarted group continues from the mid-epoch checkpoint; equals an uninterrupted 2-process run exactly",
    )

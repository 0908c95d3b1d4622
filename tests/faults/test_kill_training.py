"""kill -9 during training, at named moments and at random ones: --resume then ends exactly where an
uninterrupted run ends, and every survivor can be evaluated and plotted."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from mnistlab.core.rundir import open_run
from mnistlab.training.checkpoint import load_checkpoint
from tests.tbcheck import assert_events_match_run

from .conftest import background, in_background, is_one_line_error, make_tiny_env, mnistlab, popen, wait_for_background

pytestmark = pytest.mark.slow  # every test kills and resumes real training processes

TRAIN = ["train", "--dataset", "tiny", "--epochs", "4", "--deterministic", "--device", "cpu", "--no-progress"]
COMPARED = ["epoch", "train_loss", "val_loss", "val_accuracy", "steps", "global_step"]


def final_numbers(run_path):
    run = open_run(run_path)
    test = run.test()
    return (
        [{k: r[k] for k in COMPARED} for r in run.metrics()],
        run.steps(),
        (test["loss"], test["accuracy"], test["confusion"]),
    )


@in_background
def fresh_reference(tmp):
    """The uninterrupted run in a fresh interpreter (`python -m mnistlab`, as a user starts it)."""
    env = make_tiny_env(tmp)
    p = mnistlab([*TRAIN, "--run-dir", str(tmp / "reference")], env["env"], fresh=True)
    assert p.returncode == 0, p.stderr
    return final_numbers(tmp / "reference")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's numbers (the tiny data is the same in every test), and how long it takes.
    Run twice: in a fresh interpreter (the numbers every test compares with) and as the tests' own
    processes are started (forked, see conftest.py; the duration the random kills are drawn from,
    measured with nothing else running); the two must agree exactly."""
    numbers = background(fresh_reference)
    wait_for_background()
    env = make_tiny_env(tmp_path_factory.mktemp("reference"))
    t0 = time.perf_counter()
    p = mnistlab([*TRAIN, "--run-dir", str(env["tmp"] / "run")], env["env"])
    whole = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr
    assert final_numbers(env["tmp"] / "run") == numbers
    return numbers, whole


def readers_of(run_dir) -> list[tuple[list[str], bool]]:
    """eval works once a checkpoint exists and plot once an epoch is recorded; before that, both say so clearly."""
    has_checkpoint = (run_dir / "last.pt").exists()
    has_epoch = (run_dir / "config.json").exists() and bool(open_run(run_dir).metrics())
    return [
        (["eval", str(run_dir), "--device", "cpu"], has_checkpoint),
        (["plot", str(run_dir), "--out", str(run_dir.parent / "p.png")], has_epoch),
    ]


def reader_did_right(code: int, err: str, works: bool) -> bool:
    return code == 0 if works else (code == 2 and err.count("mnistlab: error:") == 1 and "Traceback" not in err)


@pytest.fixture
def survivor_is_readable(tiny_env, monkeypatch, capsys):
    """readers_of(run_dir), in-process (the same CLI code), since a process start costs more than the check."""
    from mnistlab.cli import main

    for var in ("MNISTLAB_DATA", "MNISTLAB_DATASETS_FILE"):
        monkeypatch.setenv(var, tiny_env["env"][var])

    def check(run_dir) -> None:
        for args, works in readers_of(run_dir):
            code = main(args)
            err = capsys.readouterr().err
            assert reader_did_right(code, err, works), (args, err)

    return check


def resume_until_finished(run_dir, env) -> None:
    p = mnistlab(["train", "--resume", str(run_dir), "--no-progress"], env)
    assert p.returncode == 0, p.stderr


KILL_POINTS = [
    "write:config.json",
    "epoch-end:1",
    "write:best.pt:1",
    "write:last.pt:1",
    "after-checkpoint:1",
    "write:metrics.csv:2",
    "epoch-end:3",
    "write:last.pt:3",
    "write:steps.csv:4",
    "final-eval",
    "write:test.json",
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_at_a_named_moment_then_resume(tiny_env, reference, reliability, survivor_is_readable, point):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    p = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env, kill_at=point)
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stderr[-500:])
    survivor_is_readable(run_dir)
    if point.startswith("after-checkpoint"):  # status.json counts the epochs last.pt holds, at every checkpoint
        assert open_run(run_dir).status() == {"state": "running", "job": "train", "epochs_done": 1}
    if (run_dir / "config.json").exists():
        resume_until_finished(run_dir, env)
    else:  # killed while the run directory was being set up: start it again, same command
        p = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env)
        assert p.returncode == 0, p.stderr
    assert not list(run_dir.glob(".*.tmp"))  # a killed write's temporary file is cleaned up on resume
    assert final_numbers(run_dir) == reference[0]
    assert_events_match_run(run_dir)  # TensorBoard: every scalar once, equal to the CSVs
    reliability.record(
        "Killed with SIGKILL during training, then --resume",
        f"at `{point}`",
        "nothing lost: final metrics equal an uninterrupted run's",
    )


@in_background
def killed_and_resumed_in_fresh_interpreters(tmp):
    """One named point as a user meets it: the killed run and its resume each a fresh `python -m mnistlab`
    (eval and plot on the survivor in between, as processes), to hold the tests' forked processes to it."""
    env = make_tiny_env(tmp)["env"]
    run_dir = tmp / "run"
    killed = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env, kill_at="write:last.pt:1", fresh=True)
    readers = [(args, works, mnistlab(args, env)) for args, works in readers_of(run_dir)]
    resumed = mnistlab(["train", "--resume", str(run_dir), "--no-progress"], env, fresh=True)
    return run_dir, killed, readers, resumed


def test_kill_then_resume_in_fresh_interpreters(reference):
    run_dir, killed, readers, resumed = background(killed_and_resumed_in_fresh_interpreters)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-500:])
    for args, works, p in readers:
        assert reader_did_right(p.returncode, p.stderr, works), (args, p.stderr)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run_dir.glob(".*.tmp"))
    assert final_numbers(run_dir) == reference[0]
    assert_events_match_run(run_dir)


@pytest.mark.parametrize("seed", range(5))
def test_kill_at_a_random_moment_then_resume(tiny_env, reference, reliability, survivor_is_readable, seed):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    numbers, whole = reference
    delay = random.Random(seed).uniform(0.3 * whole, 1.0 * whole)
    proc = popen([*TRAIN, "--run-dir", str(run_dir)], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not (run_dir / "config.json").exists():  # killed before the run directory was set up
        p = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env)
        assert p.returncode == 0, p.stderr
    else:
        survivor_is_readable(run_dir)
        if open_run(run_dir).status().get("state") != "completed":
            resume_until_finished(run_dir, env)
    assert final_numbers(run_dir) == numbers
    assert_events_match_run(run_dir)
    reliability.record(
        "Killed with SIGKILL during training, then --resume",
        "at a random moment (seeded)",
        "nothing lost: final metrics equal an uninterrupted run's",
    )


# SIGTERM at: the start of epoch 2's validation (nothing of epoch 2 saved yet), and halfway through
# writing epoch 2's last.pt (the metrics row of epoch 2 already written): the stop waits for the checkpoint
TERM_POINTS = {"epoch-end:2": 1, "write:last.pt:2": 2}


@pytest.mark.parametrize("point", list(TERM_POINTS))
def test_sigterm_stops_like_ctrl_c_then_resume(tiny_env, reference, reliability, point):
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    p = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env, kill_at=point, kill_signal="TERM")
    saved = TERM_POINTS[point]
    assert p.returncode == 143 and "mnistlab: terminated" in p.stderr and "Traceback" not in p.stderr, p.stderr[-800:]
    assert f"terminated after epoch {saved} (last.pt holds epoch {saved})" in p.stdout
    assert open_run(run_dir).status() == {
        "state": "terminated",
        "job": "train",
        "message": "terminated",
        "epochs_done": saved,
    }
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == saved == len(open_run(run_dir).metrics())
    resume_until_finished(run_dir, env)
    assert final_numbers(run_dir) == reference[0]
    reliability.record(
        "Stopped with SIGTERM during training, then --resume",
        f"at `{point}`",
        "state `terminated`, exit 143, the message and status.json name the epoch last.pt holds; "
        "nothing lost: final metrics equal an uninterrupted run's",
    )


def test_kill_while_resume_rewrites_tensorboard_events(tiny_env, reference, reliability):
    """A kill between the rewritten event file's move and the stale files' deletion leaves duplicates
    behind; the next resume removes them: in the end every scalar is there once."""
    env, run_dir = tiny_env["env"], tiny_env["tmp"] / "run"
    p = mnistlab([*TRAIN, "--run-dir", str(run_dir)], env, kill_at="write:last.pt:3")
    assert p.returncode == -signal.SIGKILL
    p = mnistlab(["train", "--resume", str(run_dir), "--no-progress"], env, kill_at="tensorboard-rewrite")
    assert p.returncode == -signal.SIGKILL, p.stderr[-500:]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the stale file and the rewritten one
    resume_until_finished(run_dir, env)
    assert final_numbers(run_dir) == reference[0]
    assert_events_match_run(run_dir)
    reliability.record(
        "Killed with SIGKILL during training, then --resume",
        "while resume rewrites the TensorBoard event files",
        "nothing lost, nothing duplicated after the next resume",
    )


def test_kill_a_run_of_your_own_model_then_resume(tiny_env, reliability):
    """A file spec's run, killed after an epoch's events and before its checkpoint, resumes from the
    run's verified copy and ends exactly where an uninterrupted run of the same model ends."""
    env, tmp = tiny_env["env"], tiny_env["tmp"]
    net = tmp / "net.py"
    net.write_text(
        "from torch import nn\n\ndef Net(num_classes=10):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, num_classes))\n"
    )
    args = [*TRAIN, "--epochs", "2", "--model", f"{net}:Net"]
    p = mnistlab([*args, "--run-dir", str(tmp / "whole")], env)
    assert p.returncode == 0, p.stderr
    p = mnistlab([*args, "--run-dir", str(tmp / "killed")], env, kill_at="write:last.pt:2")
    assert p.returncode == -signal.SIGKILL
    resume_until_finished(tmp / "killed", env)
    assert final_numbers(tmp / "killed") == final_numbers(tmp / "whole")
    assert_events_match_run(tmp / "killed")
    reliability.record(
        "Killed with SIGKILL during training, then --resume",
        "a run of your own model (`file.py:Name`) at `write:last.pt:2`",
        "nothing lost: final metrics equal an uninterrupted run's",
    )


def test_diverging_run_stops_clearly_and_keeps_best(tiny_env, reliability):
    env, tmp = tiny_env["env"], tiny_env["tmp"]
    p = mnistlab(
        [
            "train",
            "--dataset",
            "tiny",
            "--epochs",
            "5",
            "--lr",
            "100",
            "--no-progress",
            "--run-dir",
            str(tmp / "lr100"),
        ],
        env,
    )
    assert is_one_line_error(p) and "diverged" in p.stderr and "at epoch 1, step" in p.stderr
    assert "no checkpoint written" in p.stderr
    reliability.record("Diverging runs", "`--lr 100` (diverges in epoch 1)", "clear error naming epoch and step")
    p = mnistlab(
        ["train", "--dataset", "tiny", "--epochs", "5", "--lr", "2", "--no-progress", "--run-dir", str(tmp / "lr2")],
        env,
    )
    assert is_one_line_error(p) and "at epoch 2, step" in p.stderr and "best.pt from epoch 1 kept" in p.stderr
    assert open_run(tmp / "lr2").status()["state"] == "diverged"
    p = mnistlab(["eval", str(tmp / "lr2"), "--checkpoint", "best", "--json"], env)
    assert p.returncode == 0 and '"epoch": 1' in p.stdout
    reliability.record(
        "Diverging runs",
        "`--lr 2` (diverges in epoch 2)",
        "clear error naming epoch and step; best.pt of epoch 1 kept and usable",
    )

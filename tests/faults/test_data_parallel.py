"""torchrun with 2 CPU processes (gloo): the same losses as one process at the same global batch, rank 0
alone writes, and a run started with N processes resumes with another N; under 2 and 3 processes, validation
and test count every sample once, whatever the remainder."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnistlab.core.rundir import open_run

from .conftest import background, in_background, make_tiny_env, mnistlab

pytestmark = pytest.mark.slow  # process groups of 1 to 3 trainers

TRAIN = ["train", "--dataset", "tiny", "--device", "cpu", "--deterministic", "--no-progress", "--log-every", "1"]


def torchrun(nproc: int, args: list[str], env: dict) -> subprocess.Popen:
    # --standalone: a free local port for the rendezvous, so parallel test runs never collide
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            "-m",
            "mnistlab",
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(p: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@in_background
def ddp_jobs(tmp):
    """One process for 3 epochs; 2 processes for 2 epochs, then resumed by one process for 1 more; and,
    at the same time, 2 processes given a batch that does not divide over them."""
    env = make_tiny_env(tmp)
    one, two = tmp / "one", tmp / "two"
    odd = torchrun(2, [*TRAIN, "--epochs", "1", "--batch-size", "63", "--run-dir", str(tmp / "odd")], env["env"])
    try:
        p = mnistlab([*TRAIN, "--epochs", "3", "--run-dir", str(one)], env["env"])
        assert p.returncode == 0, p.stderr[-800:]
        p = finished(torchrun(2, [*TRAIN, "--epochs", "2", "--run-dir", str(two)], env["env"]))
        assert p.returncode == 0, p.stderr[-1500:]
        ddp_log = p.stdout + p.stderr
        resumed = mnistlab(["train", "--resume", str(two), "--epochs", "1", "--no-progress"], env["env"])
        assert resumed.returncode == 0, resumed.stderr[-800:]
    finally:
        odd = finished(odd)
    return open_run(one), open_run(two), ddp_log, odd


@pytest.fixture(scope="module")
def runs():
    return background(ddp_jobs)


def test_two_processes_give_the_losses_of_one(runs, reliability):
    one, two, _, _ = runs
    a, b = one.steps(), two.steps()
    assert len(a) == len(b) == 24  # 512 samples / 64 per step, 3 epochs, every step logged
    for x, y in zip(a, b, strict=True):
        assert x["step"] == y["step"]
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5, abs=1e-6)
    for x, y in zip(one.metrics(), two.metrics(), strict=True):  # validation reduced over the two processes' shards
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-5) and y["val_accuracy"] == x["val_accuracy"]
    assert two.test()["total"] == one.test()["total"] == 200
    assert two.test()["accuracy"] == one.test()["accuracy"]
    reliability.record(
        "Data parallel (torchrun, gloo, 2 CPU processes)",
        "losses against one process at batch 64",
        "equal up to float rounding (rel 1e-5) at every step; validation and test reduced over ranks",
    )


def test_rank_zero_alone_writes_and_prints(runs):
    _, two, log, _ = runs
    assert log.count("epoch 1/2") == 1 and "data parallel: 2 processes, 32 samples each" in log
    assert sorted(p.name for p in two.path.glob("*.csv")) == ["metrics.csv", "steps.csv"]
    sessions = [int(r["session"]) for r in two.metrics()]
    assert sessions == [1, 1, 2]  # two epochs by the 2-process job, one by the single process that resumed it


def test_resume_with_another_number_of_processes(runs, reliability):
    one, two, _, _ = runs
    x, y = one.metrics()[-1], two.metrics()[-1]
    assert y["epoch"] == 3 and y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)
    reliability.record(
        "Data parallel (torchrun, gloo, 2 CPU processes)",
        "started with 2 processes, resumed with 1",
        "continues where it stopped; equals a 1-process run up to float rounding",
    )


def test_batch_that_does_not_divide_is_one_line(runs):
    p = runs[3]
    # each rank says it in one line and exits 2 (torchrun then reports the failed workers its own way)
    assert p.returncode != 0
    assert "mnistlab: error: --batch-size 63 is the global batch: it must divide evenly over 2 processes" in p.stderr


UNEVEN = [*TRAIN, "--epochs", "1", "--max-steps", "2", "--batch-size", "60"]


@in_background
def uneven_eval_jobs(tmp):
    """1001 validation and 1001 test samples (evaluated in batches of 1000: a last batch of 1, shorter than
    the job), evaluated by 1, 2 and 3 processes after the same 2 steps."""
    env = make_tiny_env(tmp, n_train=5006, n_test=1001)  # 20% of 5006: 1001 for validation
    p = mnistlab([*UNEVEN, "--run-dir", str(tmp / "1")], env["env"])
    assert p.returncode == 0, p.stderr[-800:]
    for n in (2, 3):
        p = finished(torchrun(n, [*UNEVEN, "--run-dir", str(tmp / str(n))], env["env"]))
        assert p.returncode == 0, p.stderr[-1500:]
    return {n: open_run(tmp / str(n)) for n in (1, 2, 3)}


def test_every_evaluation_sample_counts_once_under_any_number_of_processes(reliability):
    runs = background(uneven_eval_jobs)
    one = runs[1]
    assert one.test()["total"] == 1001
    for n in (2, 3):
        test, val = runs[n].test(), runs[n].metrics()[-1]
        assert test["total"] == 1001 and test["confusion"] == one.test()["confusion"], n
        assert test["accuracy"] == one.test()["accuracy"] and test["loss"] == pytest.approx(
            one.test()["loss"], rel=1e-5
        )
        assert val["val_accuracy"] == one.metrics()[-1]["val_accuracy"]
        assert val["val_loss"] == pytest.approx(one.metrics()[-1]["val_loss"], rel=1e-5)
    reliability.record(
        "Data parallel (torchrun, gloo, 2 CPU processes)",
        "1001 validation and test samples over 2 and 3 processes (last batch of 1)",
        "every sample counted once: totals, accuracy and loss equal one process's",
    )

"""Threads chosen for the machine as it is (core.threads): the rule, the pin, and where the choice is recorded."""

import csv
import json

import pytest
import torch

from mnistlab.cli import main
from mnistlab.core import threads
from mnistlab.core.threads import choose_threads

pytestmark = pytest.mark.slow  # command-line processes under load


@pytest.fixture(autouse=True)
def unpinned(monkeypatch):
    """Each test starts unpinned, and leaves torch's thread count as it found it."""
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(threads, "_pinned", None)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "cpus, others, workers, want",
    [
        (2, 0, 1, 2),  # quiet: every CPU, as torch's default
        (2, 1, 1, 1),  # one busy process beside it: the CPU it leaves
        (2, 2, 1, 1),  # two: never fewer than one
        (2, 5, 1, 1),
        (8, 3, 1, 5),
        (8, 0.4, 1, 8),  # a task seen in under half the samples does not cost a thread
        (2, None, 1, 2),  # no /proc: the share, as today
        (2, 1, 2, 1),  # torchrun, 2 workers on 2 CPUs, the sibling running: one each
        (16, 12, 4, 4),  # 4 workers of 4 threads: the siblings' 12 tasks are not outside load
        (16, 16, 4, 3),  # ... and 4 more outside: 12 CPUs left over 4 workers
        (1, 3, 1, 1),
    ],
)
def test_choose_threads(cpus, others, workers, want):
    n, reason = choose_threads(cpus, others, workers)
    assert n == want and f"{n} thread" in reason


def test_apply_pins_and_refresh_keeps_the_pin(monkeypatch):
    monkeypatch.setattr(threads, "others_runnable", lambda samples=3: 1.0)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    choice = threads.apply(None)
    assert (choice.threads, choice.source, torch.get_num_threads()) == (1, "auto", 1)
    assert threads.apply(2).source == "--threads" and threads.refresh().threads == 2 == torch.get_num_threads()
    threads.apply(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.refresh().source == "OMP_NUM_THREADS"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun sets OMP_NUM_THREADS=1 itself: not a user's pin
    assert threads.refresh().source == "auto" and threads.current().workers == 2


def test_others_runnable_reads_this_machine():
    seen = threads.others_runnable(samples=2)
    assert seen is None or seen >= 0


def test_train_records_the_choice(tiny, capsys, tmp_path):
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--epochs",
                "2",
                "--no-progress",
                "--threads",
                "1",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["threads"]["threads"] == 1 and env["threads"]["source"] == "--threads"
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert [r["threads"] for r in rows] == ["1", "1"]
    assert main(["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "a")]) == 0
    env = json.loads((tmp_path / "a" / "env.json").read_text())
    assert env["threads"]["source"] == "auto" and env["threads"]["reason"]


def test_threads_option_is_one_definition():
    from mnistlab.cli import build_parser

    subs = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    helps = {
        c: next(a.help for a in subs[c]._actions if "--threads" in a.option_strings)  # noqa: SLF001
        for c in ("train", "bench", "speedrun", "sweep", "lab")
    }
    assert len(set(helps.values())) == 1


def test_deterministic_pins_one_count_whatever_the_load(tiny, tmp_path, restore_determinism, monkeypatch):
    """The thread count changes a sum's rounding: a --deterministic run keeps one count throughout."""
    from mnistlab.core import threads as th
    from mnistlab.jobs.train import train_run as train
    from mnistlab.training.config import TrainConfig

    seen = iter([0.0, 5.0, 0.0, 5.0, 0.0, 5.0, 0.0, 5.0, 0.0, 5.0] * 10)  # the load jumps every epoch
    monkeypatch.setattr(th, "others_runnable", lambda samples=3: next(seen))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    run = train(
        TrainConfig(dataset="tiny", epochs=3, subset=128, device="cpu", deterministic=True),
        run_dir=tmp_path / "r",
        log=lambda m: None,
        progress=False,
        tensorboard=False,
    )
    assert len({r["threads"] for r in run.metrics()}) == 1
    assert th.current().source == "--deterministic"


@pytest.mark.parametrize("policy", [None, "ACTIVE"])
def test_the_command_line_leaves_openmps_wait_policy_alone(policy):
    """PASSIVE made a quiet machine's MLP step 5x slower (docs/benchmarks.md): the policy is the user's."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    code = (
        "import os, sys\nfrom mnistlab.cli import main\nmain(['env'])\n"
        "import torch\nprint('policy', os.environ.get('OMP_WAIT_POLICY'))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert f"policy {policy}" in out
    said = " ".join(out.split())  # env wraps a line over 160 characters (issue 28)
    assert ("its default (spin a while, then sleep)" if policy is None else f"OpenMP wait policy {policy}") in said

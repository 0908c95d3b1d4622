"""Every numeric option has a maximum, said in one line before any work; thread counts are bounded by the CPUs
(a pin above them is capped, with a line saying so); --deterministic keeps a run's recorded thread count across
a resume, whatever the CPU affinity of the resuming process."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from mnistlab.cli import build_parser, main
from mnistlab.core.rundir import open_run

from .conftest import REPO, is_one_line_error, make_tiny_env

HUGE = "9" * 20
# what each command needs besides the option tried (its positional arguments and required options)
BASE = {
    "summary": ["mlp"],
    "profile": ["mlp"],
    "eval": ["no/such/run"],
    "plot": ["no/such/run"],
    "report": ["no/such/dir"],
    "sweep": ["--study", "s", "--trials", "1", "--param", "lr=0.01,0.1"],
    "train": ["--dataset", "tiny"],
    "data show": ["--dataset", "tiny"],
    "bench": ["--dataset", "tiny"],
}


def _numeric_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command whose value is a number."""
    out = []
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, parser in commands.items():
        subs = [(name, parser)]
        for a in parser._actions:  # noqa: SLF001 - `data fetch|info|show`
            if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
                subs = [(f"{name} {n}", p) for n, p in a.choices.items()]
        for command, p in subs:
            for a in p._actions:  # noqa: SLF001
                if not a.option_strings or a.type is None or a.choices is not None:
                    continue
                try:
                    number = isinstance(a.type("2"), (int, float))
                except (argparse.ArgumentTypeError, ValueError, TypeError):
                    number = False
                if number:
                    out.append((command, a.option_strings[0]))
    return out


NUMERIC = _numeric_options()


def test_the_options_tried_are_every_numeric_option():
    assert len(NUMERIC) >= 30 and ("sweep", "--grace-period") in NUMERIC and ("train", "--threads") in NUMERIC


@pytest.mark.parametrize("command, option", NUMERIC, ids=[f"{c} {o}" for c, o in NUMERIC])
def test_every_numeric_option_has_a_maximum(tiny, capsys, reliability, command, option):
    argv = [*command.split(), *BASE.get(command, []), option, HUGE]
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    dest = option.lstrip("-").replace("-", "_")
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert option in lines[0] or dest in lines[0], lines[0]
    reliability.record(
        "Options: every number has a maximum",
        "every numeric option of every command given "
        "20 digits (--threads, --grace-period, --heartbeat-interval, --dist-timeout, --nproc, ...)",
        "clear error before any work (exit 2, one line naming the option)",
    )


@pytest.mark.parametrize("value", ["100000", "2147483648"])
def test_omp_num_threads_beyond_any_machine_is_one_line(tiny, capsys, monkeypatch, reliability, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    for argv in (["env"], ["summary", "mlp"], ["train", "--dataset", "tiny", "--epochs", "1"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and f"OMP_NUM_THREADS={value}: at most 1024" in err, err
    reliability.record(
        "Options: every number has a maximum",
        f"`OMP_NUM_THREADS={value}` (torch crashed at 100,000)",
        "clear error before any work (exit 2, one line)",
        trials=3,
    )


def test_more_threads_than_cpus_are_capped_with_a_line(tiny, tmp_path, capsys, reliability):
    from mnistlab.core.threads import usable_cpus

    asked = usable_cpus() + 97
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--epochs",
                "1",
                "--subset",
                "64",
                "--no-progress",
                "--threads",
                str(asked),
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert f"mnistlab: warning: --threads {asked} capped to the {usable_cpus()} usable CPU" in err, err
    assert open_run(tmp_path / "r").metrics()[-1]["threads"] == usable_cpus()
    reliability.record(
        "Options: every number has a maximum",
        "`--threads` above the usable CPUs (99 on 2)",
        "capped to the usable CPUs, with a one-line warning; the run records the count it used",
    )


# --- --deterministic across a resume under another CPU affinity ----------------------------------

DETERMINISTIC = [
    "train",
    "--dataset",
    "tiny",
    "--epochs",
    "2",
    "--deterministic",
    "--device",
    "cpu",
    "--no-progress",
    "--checkpoint-every",
    "3",
]


def _on_cpus(cpus: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    """`python -m mnistlab ARGS` restricted to `cpus` (taskset), in a fresh interpreter."""
    return subprocess.run(
        ["taskset", "-c", cpus, sys.executable, "-m", "mnistlab", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2, reason="needs taskset and 2 CPUs"
)
def test_deterministic_resume_keeps_the_recorded_thread_count_under_another_affinity(tmp_path, reliability):
    env = make_tiny_env(tmp_path)["env"]
    env.pop("OMP_NUM_THREADS")  # the count is --deterministic's own: the usable CPUs' share
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))[:2]))
    # the uninterrupted run and the one killed mid-epoch at once (deterministic: neither depends on the other's load)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(_on_cpus, cpus, [*DETERMINISTIC, "--run-dir", str(tmp_path / "whole")], env)
        cut = {**env, "MNISTLAB_KILL_AT": "step-checkpoint:2"}
        killed = _on_cpus(cpus, [*DETERMINISTIC, "--run-dir", str(tmp_path / "cut")], cut)
        whole = running.result()
    assert whole.returncode == 0, whole.stderr[-800:]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-800:]
    one = str(sorted(os.sched_getaffinity(0))[0])
    refused = _on_cpus(one, ["train", "--resume", str(tmp_path / "cut"), "--no-progress", "--threads", "1"], env)
    assert is_one_line_error(refused) and "computed with 2 threads" in refused.stderr, refused.stderr[-800:]
    resumed = _on_cpus(one, ["train", "--resume", str(tmp_path / "cut"), "--no-progress"], env)
    assert resumed.returncode == 0, resumed.stderr[-800:]
    assert "2 threads, as this run recorded, on 1 usable CPU" in resumed.stdout
    a, b = open_run(tmp_path / "whole"), open_run(tmp_path / "cut")
    keys = ["epoch", "train_loss", "val_loss", "val_accuracy", "threads"]
    assert [{k: r[k] for k in keys} for r in a.metrics()] == [{k: r[k] for k in keys} for r in b.metrics()]
    assert a.test()["loss"] == b.test()["loss"] and a.metrics()[0]["threads"] == 2
    reliability.record(
        "Options: every number has a maximum",
        "--deterministic run killed mid-epoch on 2 CPUs, resumed on 1 (taskset); and resumed with another --threads",
        "the recorded 2 threads kept: bit-exact with an uninterrupted run; another count is a clear error",
        trials=2,
    )

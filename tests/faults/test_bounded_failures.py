"""Data-parallel failures end within --dist-timeout, with one line on every rank still running: a peer that
never starts, one stopped with SIGSTOP, one killed with SIGKILL, start-up errors of the process group, and a
machine without the data. Two real processes joined by gloo, started by hand as two machines would be."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from mnistlab.core.rundir import open_run

from .conftest import is_one_line_error, popen

TRAIN = ["train", "--dataset", "tiny", "--device", "cpu", "--no-progress", "--epochs", "2", "--dist-timeout", "3"]
BOUND_S = 60  # the timeout, plus the start-up of a process on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(env: dict, rank: int, port: int, **extra: str) -> dict:
    return {
        **env,
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        **extra,
    }


def start(args: list, env: dict) -> subprocess.Popen:
    return popen(args, env)


def ended(p, timeout: float = BOUND_S) -> subprocess.CompletedProcess:
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.slow
def test_missing_peer_is_one_line_within_the_timeout(tiny_env, reliability):
    env = rank_env(tiny_env["env"], 0, free_port())
    t0 = time.monotonic()
    p = ended(start([*TRAIN, "--run-dir", str(tiny_env["tmp"] / "run")], env))
    assert is_one_line_error(p), p.stderr[-1500:]
    assert "did not start (--dist-timeout 3 s)" in p.stderr and "1/2 clients joined" in p.stderr
    assert time.monotonic() - t0 < BOUND_S
    reliability.record(
        "Data parallel: bounded failures", "WORLD_SIZE=2, one process started", "one line after --dist-timeout, exit 2"
    )


@pytest.mark.parametrize("case", ["MASTER_ADDR unset", "MASTER_PORT in use"])
def test_process_group_start_up_failure_is_one_line(tiny_env, case, reliability):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = rank_env(tiny_env["env"], 0, taken.getsockname()[1])
        if case == "MASTER_ADDR unset":
            env.pop("MASTER_ADDR")
        p = ended(start([*TRAIN, "--run-dir", str(tiny_env["tmp"] / "run")], env))
    assert is_one_line_error(p), p.stderr[-1500:]
    assert ("MASTER_ADDR expected" if case == "MASTER_ADDR unset" else "EADDRINUSE") in p.stderr
    reliability.record("Data parallel: bounded failures", case, "one line, exit 2")


@pytest.mark.parametrize("fault", ["STOP", "KILL"])
@pytest.mark.slow
def test_stopped_or_dead_peer_fails_the_run_within_the_timeout(tiny_env, fault, reliability):
    """Rank 1 stops itself (SIGSTOP) or dies (SIGKILL) after epoch 1's training steps, before validation:
    rank 0 waits at most --dist-timeout in its exchange, then says so in one line and the run is `failed`."""
    port, run_dir = free_port(), tiny_env["tmp"] / "run"
    peer = start(
        [*TRAIN, "--run-dir", str(run_dir)],
        rank_env(tiny_env["env"], 1, port, MNISTLAB_KILL_AT="epoch-end:1", MNISTLAB_KILL_SIGNAL=fault),
    )
    try:
        t0 = time.monotonic()
        p = ended(start([*TRAIN, "--run-dir", str(run_dir)], rank_env(tiny_env["env"], 0, port)))
        took = time.monotonic() - t0
    finally:
        peer.kill()
        peer.wait()
    assert is_one_line_error(p), p.stderr[-1500:]
    assert "rank 0: a peer of this data-parallel job is gone, stopped or slower than --dist-timeout" in p.stderr
    status = open_run(run_dir).status()
    assert status["state"] == "failed" and "a peer of this data-parallel job" in status["message"]
    assert took < BOUND_S
    reliability.record(
        "Data parallel: bounded failures",
        f"rank 1 {'stopped (SIGSTOP)' if fault == 'STOP' else 'killed (SIGKILL)'} mid-run",
        "rank 0: one line and status `failed` within --dist-timeout",
    )


@pytest.mark.slow
def test_missing_data_on_one_machine_is_one_line_on_every_rank(tiny_env, reliability):
    port, run_dir = free_port(), tiny_env["tmp"] / "run"
    empty = tiny_env["tmp"] / "empty"
    empty.mkdir()
    peer = start([*TRAIN, "--run-dir", str(run_dir)], rank_env(tiny_env["env"], 1, port, MNISTLAB_DATA=str(empty)))
    main = ended(start([*TRAIN, "--run-dir", str(run_dir)], rank_env(tiny_env["env"], 0, port)))
    peer = ended(peer)
    for p in (main, peer):
        assert is_one_line_error(p), p.stderr[-1500:]
    assert "error: tiny: could not fetch" in peer.stderr and "error: rank 1: tiny: could not fetch" in main.stderr
    reliability.record("Data parallel: bounded failures", "no data on rank 1's machine", "one line on every rank")

"""A sweep killed with SIGKILL and started again, and two sweep workers on one SQLite study (in one folder,
and in two folders as two machines would be)."""

from __future__ import annotations

import time

import pytest

from mnistlab.measure.sweeps import sweep_results
from tests.test_sweep import SWEEP

from .conftest import make_tiny_env, popen

pytestmark = pytest.mark.slow  # sweep worker processes, killed and shared


@pytest.fixture
def env(tmp_path):
    return make_tiny_env(tmp_path)


HEARTBEAT = ["--heartbeat-interval", "1", "--grace-period", "2"]  # a dead worker's trial is failed 2 s on


def _sweep_proc(env, *extra, kill_at=None):
    e = dict(env["env"])
    if kill_at:
        e["MNISTLAB_KILL_AT"] = kill_at
    return popen([*SWEEP, *HEARTBEAT, *extra], e, cwd=env["tmp"])


def test_killed_sweep_continues_with_the_same_command(env, reliability):
    # 2 epochs per trial: the third epoch checkpoint is trial 1's first; kill -9 right after it
    p = _sweep_proc(env, kill_at="after-checkpoint:3")
    p.communicate(timeout=300)
    assert p.returncode == -9
    time.sleep(3)  # past the grace period: the killed trial's heartbeat is stale
    p = _sweep_proc(env)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-800:]
    record, rows = sweep_results(env["tmp"] / "runs" / "sweep-s")
    states = [r.state for r in rows]
    assert states.count("complete") + states.count("pruned") == 3 and states[1] == "fail", states
    assert "marked failed" in err
    reliability.record(
        "Sweeps",
        "kill -9 in the middle of a trial, then the same command",
        "finished trials kept, the interrupted one marked failed, the study reaches N trials",
    )


def test_two_workers_share_one_sqlite_study(env, reliability):
    procs = [_sweep_proc(env, "--trials", "4") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    record, rows = sweep_results(env["tmp"] / "runs" / "sweep-s")
    done = [r for r in rows if r.state in ("complete", "pruned")]
    assert len(done) >= 4 and not [r for r in rows if r.state == "fail"]
    assert len({r.run_dir for r in rows}) == len(rows)  # one run directory per trial, never shared
    reliability.record(
        "Sweeps",
        "two worker processes on one SQLite study at once",
        "both finish; every trial has its own run directory; no trial lost",
    )


def test_two_folders_on_one_study_never_fail_each_others_live_trials(env, reliability):
    storage = ["--storage", f"sqlite:///{env['tmp']}/shared.db", "--trials", "3", "--epochs", "4"]
    a = _sweep_proc(env, *storage, "--out", "A")
    deadline = time.monotonic() + 120
    while not (env["tmp"] / "A" / "trial-0000" / "metrics.csv").exists():  # A's first trial is running
        assert a.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    b = _sweep_proc(env, *storage, "--out", "B")
    outs = [p.communicate(timeout=300) for p in (a, b)]
    assert [p.returncode for p in (a, b)] == [0, 0], [o[1][-800:] for o in outs]
    for folder in ("A", "B"):  # each folder's table holds the whole study
        _, rows = sweep_results(env["tmp"] / folder)
        assert [r.state for r in rows].count("complete") >= 3 and "fail" not in [r.state for r in rows], rows
    assert {r.worker for r in rows} and len({r.run_dir for r in rows}) == len(rows)
    reliability.record(
        "Sweeps",
        "two workers in different folders (two machines) on one study",
        "both finish; no live trial marked failed (Optuna heartbeat, not a local lock)",
    )

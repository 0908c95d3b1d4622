"""Two sweep workers in separate folders (two machines) share one study on a real PostgreSQL server; one is
killed with SIGKILL in the middle of a trial. The study still reaches N trials, no live trial is ever
failed, and the dead worker's trial is failed once its heartbeat is older than the grace period."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from mnistlab.measure.sweeps import sweep_results
from tests.test_sweep import SWEEP

from .conftest import make_tiny_env, popen
from .postgres import postgres_url  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow  # starts a PostgreSQL server and sweep workers

HEARTBEAT_S, GRACE_S = 1, 2
TRIALS = 20  # of 10 epochs (0.3-1 s each here): the survivor outlasts the grace period after the kill


def _worker(env: dict, url: str, out: str, kill_at: str | None = None):
    e = dict(env["env"])
    if kill_at:
        e["MNISTLAB_KILL_AT"] = kill_at
    args = [
        *SWEEP[:4],
        str(TRIALS),
        *SWEEP[5:],
        "--epochs",
        "10",
        "--storage",
        url,
        "--out",
        out,
        "--heartbeat-interval",
        str(HEARTBEAT_S),
        "--grace-period",
        str(GRACE_S),
    ]
    return popen(args, e, cwd=env["tmp"])


def _study(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="s", storage=url)


def test_a_killed_worker_on_postgres(tmp_path, postgres_url, reliability):  # noqa: F811
    env = make_tiny_env(tmp_path)
    survivor = _worker(env, postgres_url, "A")
    victim = _worker(env, postgres_url, "B", kill_at="after-checkpoint:2")  # 2 of its first trial's 10 epochs
    deadline = time.monotonic() + 120
    while victim.poll() is None:
        assert time.monotonic() < deadline, "the killed worker never reached its kill point"
        time.sleep(0.02)
    killed_at = datetime.now()
    assert victim.returncode == -9, victim.communicate()[1][-800:]
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-1500:]  # a live trial failed under it would have ended it

    trials = _study(postgres_url).get_trials()
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") >= TRIALS, states
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["worker"].endswith(f":{victim.pid}"), [
        (t.number, t.state.name, t.user_attrs.get("worker")) for t in trials
    ]
    assert all(t.user_attrs["worker"].endswith(f":{survivor.pid}") for t in trials if t.state.name != "FAIL")
    lag = (failed[0].datetime_complete - killed_at).total_seconds()
    # its last heartbeat was at most one interval before the kill; the survivor checks after every epoch
    assert GRACE_S - HEARTBEAT_S - 0.5 <= lag <= GRACE_S + 2, lag
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params and retried[0].state.name == "COMPLETE"
    assert f"trial {failed[0].number}: no heartbeat" in err
    _, rows = sweep_results(tmp_path / "A")  # the survivor's folder reports the whole study
    assert [r.state for r in rows] == [t.state.name.lower() for t in trials]
    reliability.record(
        "Sweeps",
        "two workers (two folders) on one PostgreSQL study, one killed with SIGKILL mid-trial",
        f"study reaches N trials; only the dead worker's trial failed, {lag:.1f} s "
        f"after the kill (grace {GRACE_S} s), and run again with its parameters",
    )

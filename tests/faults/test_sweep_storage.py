"""The Optuna storage boundary on a real PostgreSQL server: its password never shown or stored, and every fault of
the database (stopped, restarted, a worker stopped past the grace period) is one line plus a final state, and the
worker goes on where it can. The server trusts local connections, so a password in the URL is never checked:
these tests look for it where it must not be."""

from __future__ import annotations

import json
import signal
import time

import pytest

from mnistlab.core.rundir import open_run

from .conftest import is_one_line_error, make_tiny_env, mnistlab, popen
from .postgres import PostgresServer

pytestmark = pytest.mark.slow  # a PostgreSQL server and sweep workers

SWEEP = ["sweep", "--param", "lr=0.01:0.1:log", "--dataset", "tiny", "--device", "cpu"]


def _everything_in(folder) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def test_the_password_is_masked_everywhere(tmp_path, postgres_server, reliability):
    env = make_tiny_env(tmp_path)["env"]
    secret = PostgresServer.PASSWORD
    url = postgres_server.url("postgres", password=True)
    out = tmp_path / "sw"
    p = mnistlab(
        [*SWEEP, "--study", "masked", "--trials", "1", "--epochs", "1", "--storage", url, "--out", str(out)], env
    )
    assert p.returncode == 0, p.stderr[-800:]
    assert "mnistlab:***@" in p.stderr and secret not in p.stdout + p.stderr
    rep = mnistlab(["report", str(out)], env)
    assert rep.returncode == 0 and secret not in rep.stdout + rep.stderr, rep.stderr[-800:]
    assert (out / "report.html").is_file() and secret not in _everything_in(out)
    assert "mnistlab:***@" in (out / "sweep.json").read_text()
    # the same password in error lines: a closed port, a database that does not exist, another study's settings
    bad = {
        "a closed port": url.replace(f":{postgres_server.port}/", ":1/"),
        "a wrong database name": postgres_server.url("nosuchdb", password=True),
    }
    for name, wrong in bad.items():
        q = mnistlab([*SWEEP, "--study", "x", "--trials", "1", "--storage", wrong, "--out", str(tmp_path / name)], env)
        assert is_one_line_error(q) and "mnistlab:***@" in q.stderr and secret not in q.stderr, (name, q.stderr)
        assert not (tmp_path / name).exists()
    q = mnistlab(
        [
            *SWEEP[:2],
            "lr=0.2,0.3",
            *SWEEP[3:],
            "--study",
            "masked",
            "--trials",
            "1",
            "--storage",
            url,
            "--out",
            str(tmp_path / "other"),
        ],
        env,
    )
    assert is_one_line_error(q) and "other settings" in q.stderr and secret not in q.stderr, q.stderr
    reliability.record(
        "Secrets: a storage URL's password",
        "a PostgreSQL URL with a password: the sweep's lines, "
        "sweep.json, trials.json, every run file, report.md and report.html; error lines for a "
        "closed port, a wrong database name and another study's settings",
        "shown and stored as `user:***@host` only; never in any line or file",
        trials=5,
    )


def _worker(env, url, out, *extra, trials=2, epochs=6):
    return popen(
        [
            *SWEEP,
            "--study",
            "s",
            "--trials",
            str(trials),
            "--epochs",
            str(epochs),
            "--storage",
            url,
            "--out",
            str(out),
            "--heartbeat-interval",
            "1",
            *extra,
        ],
        env,
    )


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _epochs(run_dir) -> int:
    try:
        return len(open_run(run_dir).metrics())
    except Exception:  # noqa: BLE001 - not there yet, or being written
        return 0


def test_the_database_stopped_mid_trial_is_one_line_then_the_same_command_continues(
    tmp_path, postgres_server, reliability
):
    env = make_tiny_env(tmp_path)["env"]
    postgres_server.create_database("stopped")
    url, out = postgres_server.url("stopped"), tmp_path / "sw"
    w = _worker(env, url, out, "--grace-period", "3")
    try:
        _wait_for(lambda: _epochs(out / "trial-0000") >= 1, "the first epoch")
        postgres_server.stop()
        _, err = w.communicate(timeout=120)
    finally:
        postgres_server.start()
    assert w.returncode == 2 and "Traceback" not in err, err[-1500:]
    assert err.count("mnistlab: error:") == 1 and "unreachable for 3 s" in err and "exceeding max length" not in err
    assert json.loads((out / "status.json").read_text())["state"] == "failed"
    assert open_run(out / "trial-0000").status()["state"] == "failed"
    time.sleep(3.5)  # the stopped worker's trial has no heartbeat for the grace period
    again = _worker(env, url, out, "--grace-period", "3")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-1500:]
    states = [t["state"] for t in json.loads((out / "trials.json").read_text())]
    assert states.count("complete") == 2 and states[0] == "fail", states
    reliability.record(
        "Sweeps: the storage",
        "the database stopped in the middle of a trial",
        "one line within the grace period (what failed, not Optuna's 'exceeding max length'); the "
        "sweep and the trial's run `failed`; once it is back the same command continues the study",
    )


def test_the_database_restarted_mid_trial_changes_nothing(tmp_path, postgres_server, reliability):
    env = make_tiny_env(tmp_path)["env"]
    postgres_server.create_database("restarted")
    url, out = postgres_server.url("restarted"), tmp_path / "sw"
    w = _worker(env, url, out, "--grace-period", "60", epochs=20)
    try:
        _wait_for(lambda: _epochs(out / "trial-0000") >= 1, "the first epoch")
        postgres_server.stop()
        assert open_run(out / "trial-0000").status()["state"] == "running"  # stopped in the middle of the trial
        time.sleep(1)
    finally:
        postgres_server.start()
    _, err = w.communicate(timeout=300)
    assert w.returncode == 0 and "Traceback" not in err, err[-1500:]
    states = [t["state"] for t in json.loads((out / "trials.json").read_text())]
    assert states.count("complete") == 2, states
    reliability.record(
        "Sweeps: the storage",
        "the database restarted in the middle of a trial (down about 1 s)",
        "the worker waits for it and goes on: the study reaches N trials, exit 0, no traceback",
    )


def test_a_worker_stopped_past_the_grace_period_goes_on(tmp_path, postgres_server, reliability):
    env = make_tiny_env(tmp_path)["env"]
    postgres_server.create_database("paused")
    url = postgres_server.url("paused")
    a = _worker(env, url, tmp_path / "A", "--grace-period", "2", trials=3, epochs=8)
    _wait_for(lambda: _epochs(tmp_path / "A" / "trial-0000") >= 1, "worker A's first epoch")
    a.send_signal(signal.SIGSTOP)
    try:
        b = _worker(env, url, tmp_path / "B", "--grace-period", "2", trials=3, epochs=8)
        _wait_for(lambda: any(t["state"] == "fail" for t in _trials(tmp_path / "B")), "B to fail A's trial", 300)
    finally:
        a.send_signal(signal.SIGCONT)
    _, err_a = a.communicate(timeout=300)
    _, err_b = b.communicate(timeout=300)
    assert a.returncode == 0 and "Traceback" not in err_a and "Cannot tell" not in err_a, err_a[-1500:]
    assert "trial 0: marked failed" in err_a and "this worker goes on" in err_a, err_a[-1500:]
    assert b.returncode == 0, err_b[-1500:]
    assert open_run(tmp_path / "A" / "trial-0000").status()["state"] == "failed"
    states = [t["state"] for t in _trials(tmp_path / "A")]
    assert states[0] == "fail" and states.count("complete") >= 3, states
    reliability.record(
        "Sweeps: the storage",
        "a worker stopped (SIGSTOP) past the grace period while another fails its trial, then continued (SIGCONT)",
        "one line (no `Cannot tell a FAIL trial`); its "
        "trial `fail` and its run `failed`; it goes on with new trials; the study reaches N",
    )


def _trials(folder) -> list[dict]:
    try:
        return json.loads((folder / "trials.json").read_text())
    except (OSError, ValueError):
        return []

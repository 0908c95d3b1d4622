"""A speedrun stopped by a signal keeps the seeds it finished (issue 22, item 12)."""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.faults.conftest import popen

pytestmark = pytest.mark.slow  # a speedrun process stopped mid-way


def test_sigterm_during_a_speedrun_keeps_the_finished_seeds(tiny_env, reliability):
    out = tiny_env["tmp"] / "S"
    p = popen(["speedrun", "--dataset", "tiny", "--seeds", "50", "--device", "cpu", "--out", str(out)], tiny_env["env"])
    record = out / "speedrun.json"
    deadline = time.monotonic() + 120
    while not record.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record.exists(), p.communicate()[1][-2000:]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err[-2000:]
    kept = json.loads(record.read_text())
    assert 1 <= len(kept["runs"]) < 50 and kept["seeds_planned"] == 50
    assert json.loads((out / "status.json").read_text())["state"] == "terminated"
    assert f"of 50 seeds; {record} holds them" in err and err.strip().splitlines()[-1] == "mnistlab: terminated"
    from mnistlab.report.builder import build_report

    md, _ = build_report([out], tiny_env["tmp"] / "rep")
    assert "of the 50 asked for finished: the speedrun was stopped" in md.read_text()
    reliability.record(
        "Stopped with SIGTERM",
        "during `speedrun --seeds 50`, after the first seed",
        "exit 143 with a line; speedrun.json holds every finished seed; status terminated",
        trials=1,
    )

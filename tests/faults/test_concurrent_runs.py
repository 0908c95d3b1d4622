"""Two runs started at the same moment get their own run directories and never share a file."""

from __future__ import annotations

import subprocess
import sys

from mnistlab.core.rundir import open_run


def test_two_runs_at_once(tiny_env, reliability):
    base = tiny_env["tmp"] / "work"
    base.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "mnistlab", "train", "--dataset", "tiny", "--epochs", "2",
                               "--seed", str(seed), "--no-progress"], cwd=base, env=tiny_env["env"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    dirs = [out.strip().splitlines()[-1] for out, _ in outs]
    assert dirs[0] != dirs[1]
    for seed, d in zip((1, 2), dirs):
        run = open_run(base / d if not d.startswith("/") else d)
        assert run.config()["seed"] == seed and len(run.metrics()) == 2 and run.status()["state"] == "finished"
    assert sorted(p.name for p in (base / "runs").iterdir()) == sorted(d.split("/")[-1] for d in dirs)
    reliability.record("Concurrency", "two runs started at the same moment, same runs/ folder",
                       "distinct run directories; each holds only its own run")

"""Two runs started at the same moment get their own run directories and never share a file."""

from __future__ import annotations

import time

import pytest

from mnistlab.core.rundir import open_run

from .conftest import HERE, background, in_background, is_one_line_error, make_tiny_env, mnistlab, popen


@pytest.mark.slow
def test_two_runs_at_once(tiny_env, reliability):
    base = tiny_env["tmp"] / "work"
    base.mkdir()
    procs = [
        popen(
            ["train", "--dataset", "tiny", "--epochs", "2", "--seed", str(seed), "--no-progress"],
            tiny_env["env"],
            cwd=base,
        )
        for seed in (1, 2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    dirs = [out.strip().splitlines()[-1] for out, _ in outs]
    assert dirs[0] != dirs[1]
    for seed, d in zip((1, 2), dirs, strict=True):
        run = open_run(base / d if not d.startswith("/") else d)
        assert run.config()["seed"] == seed and len(run.metrics()) == 2 and run.status()["state"] == "completed"
    assert sorted(p.name for p in (base / "runs").iterdir()) == sorted(d.split("/")[-1] for d in dirs)
    reliability.record(
        "Concurrency",
        "two runs started at the same moment, same runs/ folder",
        "distinct run directories; each holds only its own run",
    )


COMPARED = ["epoch", "train_loss", "val_loss", "val_accuracy", "steps", "global_step"]


def _numbers(run_path):
    run = open_run(run_path)
    return [{k: r[k] for k in COMPARED} for r in run.metrics()], run.steps(), run.test()["confusion"]


@in_background
def watched_and_alone(tmp):
    """Two identical runs at once; while the first trains, plot, eval and report in a loop on it (in a
    process of their own, tests/faults/read_in_a_loop.py)."""
    env = make_tiny_env(tmp)["env"]
    args = ["train", "--dataset", "tiny", "--epochs", "300", "--deterministic", "--device", "cpu", "--no-progress"]
    watched, alone, out, stop = tmp / "watched", tmp / "alone", tmp / "readers", tmp / "stop"
    out.mkdir()
    procs = [popen([*args, "--run-dir", str(d)], env) for d in (watched, alone)]
    readers = popen([watched, out, stop], env, script=HERE / "read_in_a_loop.py")
    while procs[0].poll() is None and readers.poll() is None:
        time.sleep(0.05)
    stop.touch()
    return watched, alone, procs, [p.communicate(timeout=300) for p in procs], readers, readers.communicate(timeout=300)


@pytest.mark.slow
def test_readers_in_a_loop_while_training(reliability):
    """plot, eval and report on a run that is training (a natural thing to do) change nothing in it:
    the run finishes, with the numbers of a run left alone."""
    watched, alone, procs, outs, readers, (read_out, read_err) = background(watched_and_alone)
    assert readers.returncode == 0, read_err[-1500:]  # no reader raised
    reads = int(read_out.splitlines()[-1].removeprefix("rounds: "))
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    assert reads >= 3, "the readers never overlapped the training; make it longer"
    assert open_run(watched).status()["state"] == "completed"
    assert _numbers(watched) == _numbers(alone)
    reliability.record(
        "Concurrency",
        f"plot, eval and report in a loop on a run while it trains ({reads} rounds)",
        "the run finishes with the numbers of a run left alone; readers delete nothing",
    )


def test_second_trainer_on_a_run_is_refused_naming_the_first(tiny_env, reliability):
    run_dir = tiny_env["tmp"] / "run"
    first = popen(
        ["train", "--dataset", "tiny", "--epochs", "200", "--no-progress", "--run-dir", str(run_dir)], tiny_env["env"]
    )
    try:
        while not (run_dir / "last.pt").exists():
            assert first.poll() is None, first.communicate()[1][-800:]
            time.sleep(0.01)
        second = mnistlab(
            ["train", "--resume", str(run_dir), "--epochs", "1", "--no-progress"], tiny_env["env"], timeout=120
        )
    finally:
        first.kill()
        first.wait()
    assert is_one_line_error(second) and f"in use by process {first.pid}" in second.stderr, second.stderr
    reliability.record(
        "Concurrency",
        "a second --resume of a run that is training",
        "clear error naming the holder's pid; the first run goes on",
    )


def test_two_fetches_at_once_both_succeed(tiny_env, reliability):
    import gzip

    spec, root = tiny_env["spec"], tiny_env["root"]
    raw = spec.raw_dir(root)
    for f in spec.files:  # only the .gz copies remain: both fetches must decompress, verify and install
        (raw / (f.name + ".gz")).write_bytes(gzip.compress((raw / f.name).read_bytes()))
        (raw / f.name).unlink()
    procs = [popen(["data", "fetch", "--dataset", "tiny", "--no-web"], tiny_env["env"]) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-800:] for o in outs]
    from mnistlab.data.verify import check_file

    for f in spec.files:
        check_file(raw / f.name, f)
    assert not list(raw.glob(".*.part"))
    reliability.record(
        "Concurrency",
        "two data fetches of one folder at the same moment",
        "both succeed (the second waits for the first); only verified files",
    )

"""A full disk and a read-only run directory: a clear error, and the checkpoints written before intact."""

from __future__ import annotations

import subprocess

import pytest

from mnistlab.core.rundir import open_run
from mnistlab.training.checkpoint import load_checkpoint

from .conftest import is_one_line_error, mnistlab


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    # room for epoch 1's best.pt and last.pt and the small files, not for a third checkpoint
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2400k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root); the disk-full test needs one")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_mid_run(tiny_env, small_tmpfs, reliability):
    run_dir = small_tmpfs / "run"
    p = mnistlab(
        ["train", "--dataset", "tiny", "--epochs", "6", "--no-progress", "--run-dir", str(run_dir)], tiny_env["env"]
    )
    assert is_one_line_error(p) and "No space left on device" in p.stderr, p.stderr[-800:]
    state = load_checkpoint(run_dir / "last.pt")  # the last complete checkpoint still loads
    assert state["epoch"] >= 1 and len(open_run(run_dir).metrics()) >= state["epoch"]
    assert mnistlab(["eval", str(run_dir), "--device", "cpu"], tiny_env["env"]).returncode == 0
    reliability.record(
        "Storage", "disk full during a run (2.4 MB tmpfs)", "clear error; earlier checkpoints intact and usable"
    )


@pytest.mark.slow
def test_read_only_run_directory(tiny_env, small_tmpfs, reliability):
    run_dir = small_tmpfs / "run"
    assert (
        mnistlab(
            ["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(run_dir)], tiny_env["env"]
        ).returncode
        == 0
    )
    before = (run_dir / "last.pt").read_bytes()
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)]).returncode == 0
    p = mnistlab(["train", "--resume", str(run_dir), "--epochs", "1", "--no-progress"], tiny_env["env"])
    assert is_one_line_error(p) and "Read-only file system" in p.stderr, p.stderr[-800:]
    assert (run_dir / "last.pt").read_bytes() == before
    p = mnistlab(
        ["train", "--dataset", "tiny", "--no-progress", "--run-dir", str(small_tmpfs / "new")], tiny_env["env"]
    )
    assert is_one_line_error(p) and "cannot create run directory" in p.stderr
    reliability.record(
        "Storage", "read-only run directory (resume, and a new run)", "clear error; earlier checkpoints intact"
    )

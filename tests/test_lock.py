"""The run lock where `fcntl` is missing (Windows): msvcrt's byte lock instead, or one clear line where
neither exists. This machine has fcntl, so its absence is simulated (an import that fails) and msvcrt
is a stand-in with Windows' semantics: a byte locked by one file handle is refused to every other."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
import types

import pytest

from mnistlab.cli import main
from mnistlab.core.errors import CheckpointError, StorageError
from mnistlab.core.lock import FolderLock


class FakeMsvcrt(types.ModuleType):
    LK_UNLCK, LK_LOCK, LK_NBLCK = 0, 1, 2

    def __init__(self) -> None:
        super().__init__("msvcrt")
        self.held: dict[tuple[int, int, int], int] = {}  # (device, inode, offset) -> the fd that holds it
        self.calls: list[tuple[int, int]] = []  # (mode, offset)

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1
        st, offset = os.fstat(fd), os.lseek(fd, 0, os.SEEK_CUR)
        key = (st.st_dev, st.st_ino, offset)
        self.calls.append((mode, offset))
        if mode == self.LK_UNLCK:
            self.held.pop(key, None)
        elif self.held.setdefault(key, fd) != fd:
            raise OSError(errno.EACCES, "Permission denied")


@pytest.fixture
def windows(monkeypatch) -> FakeMsvcrt:
    fake = FakeMsvcrt()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as on Windows
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    return fake


def test_without_fcntl_msvcrt_locks_and_a_second_holder_is_named(tmp_path, windows):
    first = FolderLock(tmp_path, what="run").acquire()
    assert (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"  # readable: the locked byte is past it
    with pytest.raises(CheckpointError, match=f"this run is in use by process {os.getpid()}"):
        FolderLock(tmp_path, what="run").acquire()
    first.release()
    assert windows.held == {}  # unlocked before the file is closed, as Windows asks
    with FolderLock(tmp_path, what="run"):
        pass
    assert {offset for _, offset in windows.calls} == {1 << 20}


def test_without_fcntl_a_waiting_lock_waits_for_the_holder(tmp_path, windows):
    first = FolderLock(tmp_path, what="data", wait=True).acquire()
    got = []
    waiter = threading.Thread(target=lambda: got.append(FolderLock(tmp_path, what="data", wait=True).acquire()))
    waiter.start()
    time.sleep(0.3)
    assert not got  # still waiting
    first.release()
    waiter.join(10)
    assert got and not waiter.is_alive()
    got[0].release()


def test_without_fcntl_or_msvcrt_taking_a_run_is_one_clear_line(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    with pytest.raises(StorageError, match="neither fcntl"):
        FolderLock(tmp_path).acquire()
    code = main(["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err == (
        f"mnistlab: error: {tmp_path / 'r'}: cannot lock: this Python has neither fcntl (POSIX) nor "
        f"msvcrt (Windows); mnistlab runs on Linux and macOS\n"
    )


def test_every_command_imports_without_fcntl():
    """fcntl is imported only when a lock is taken: importing the package and parsing a command never
    needs it (it used to be imported at the top of core/lock.py, which rundir.py imports)."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "import mnistlab.core.lock, mnistlab.core.rundir, mnistlab.jobs.sweep\n"
        "from mnistlab.cli import build_parser\n"
        "build_parser().parse_args(['train', '--epochs', '1'])\nprint('ok')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr[-2000:]

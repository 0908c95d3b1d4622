"""One owner per folder: an OS file lock, released by the kernel when its process ends, even by a kill.

Only a folder's owner may clean it (remove the temporary files of writes a crash interrupted);
readers (eval, plot, report) never take the lock and never delete anything.

POSIX: flock(2) on the whole file. Where `fcntl` is missing (Windows), msvcrt.locking on one byte far
past the holder's pid, so that a second process can still read whose lock it is. Where neither exists,
taking a lock is one clear line.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from mnistlab.core.errors import CheckpointError, StorageError

LOCK_FILE = ".lock"
_WINDOWS_LOCK_OFFSET = 1 << 20  # the byte msvcrt locks: past the pid, which other processes read
_WINDOWS_POLL_S = 0.1  # msvcrt has no blocking lock that waits forever: wait=True polls
_IN_USE = (errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK))


class FolderLock:
    """`with FolderLock(folder, what="run"):` holds an exclusive lock on `folder/.lock`.

    wait=False: a second holder gets one line naming the first one's pid. wait=True: it blocks
    until the first one is done (two data fetches queue up instead of failing).
    """

    def __init__(self, folder: Path, what: str = "folder", wait: bool = False, name: str = LOCK_FILE) -> None:
        self.path = Path(folder) / name
        self.what, self.wait = what, wait
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o666)  # never through a symlink (where the OS can refuse one)
        except OSError as e:
            raise StorageError(f"{self.path.parent}: cannot lock ({e.strerror})") from None
        try:
            _lock(fd, self.wait, self.path.parent)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in _IN_USE:
                who = f"process {holder}" if holder else "another process"
                raise CheckpointError(
                    f"{self.path.parent}: this {self.what} is in use by {who}; wait for it to finish or stop it first"
                ) from None
            raise StorageError(f"{self.path.parent}: cannot lock ({e.strerror})") from None
        except StorageError:
            os.close(fd)
            raise
        _write_pid(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock(fd: int, wait: bool, folder: Path) -> None:
    """An exclusive lock on fd's file; OSError (EWOULDBLOCK or EACCES) if another process holds it and
    not `wait`. fcntl and msvcrt are imported here, not at the top: `import mnistlab.core.lock` (and so
    every command) works on any OS, and only taking a lock needs one of them."""
    try:
        import fcntl
    except ImportError:
        _lock_msvcrt(fd, wait, folder)
        return
    fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)


def _lock_msvcrt(fd: int, wait: bool, folder: Path) -> None:
    try:
        import msvcrt
    except ImportError:
        raise StorageError(
            f"{folder}: cannot lock: this Python has neither fcntl (POSIX) nor msvcrt (Windows); "
            f"mnistlab runs on Linux and macOS"
        ) from None
    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    while True:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]  # Windows only
            return
        except OSError as e:
            if not wait or e.errno not in _IN_USE:
                raise
        time.sleep(_WINDOWS_POLL_S)


def _unlock(fd: int) -> None:
    """flock's lock goes with the file's closing; msvcrt's is unlocked first, as Windows asks."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        try:
            import msvcrt

            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]  # Windows only
        except (ImportError, OSError):
            pass  # closing the file drops it all the same


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None

"""One owner per folder: an OS file lock, released by the kernel when its process ends, even by a kill.

Only a folder's owner may clean it (remove the temporary files of writes a crash interrupted);
readers (eval, plot, report) never take the lock and never delete anything.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from mnistlab.core.errors import CheckpointError, StorageError

LOCK_FILE = ".lock"


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
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)  # never through a symlink
        except OSError as e:
            raise StorageError(f"{self.path.parent}: cannot lock ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise CheckpointError(f"{self.path.parent}: this {self.what} is in use by {who}; "
                                      f"wait for it to finish or stop it first") from None
            raise StorageError(f"{self.path.parent}: cannot lock ({e.strerror})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError):
        return None

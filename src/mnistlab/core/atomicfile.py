"""Writing a file so that a crash leaves the old version or the new one, never half of one."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from mnistlab.core.errors import StorageError
from mnistlab.core.faults import kill_point

# mkstemp(prefix=".<name>.", suffix=...) adds 8 characters from this alphabet
_TEMP_NAME = re.compile(r"\.(.+)\.[a-z0-9_]{8}(\.[a-z]+)")


def write_atomic(path: Path, data: bytes, verify: Callable[[Path], None] | None = None, suffix: str = ".tmp") -> None:
    """Write to a temporary file beside `path`, fsync, optionally `verify` it, then rename.

    A disk or permission failure is a StorageError; whatever `verify` raises propagates,
    and the temporary file is removed in every case. A folder that is a symbolic link is never written
    into: one planted inside an output folder (a lab's figures/, a sweep's trial) would take the write
    outside it, so mnistlab follows none (a link in place of the file itself is replaced, not followed).
    """
    path = Path(path)
    refuse_link(path.parent, f"{path.name} not written")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    except OSError as e:
        raise StorageError(f"{path}: cannot write ({e.strerror}); files written before are intact") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data[: len(data) // 2])
            kill_point(f"write:{path.name}")
            f.write(data[len(data) // 2 :])
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except OSError as e:
        raise StorageError(f"{path}: cannot write ({e.strerror}); the previous version, if any, is intact") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def refuse_link(folder: Path, consequence: str) -> None:
    """A StorageError if `folder` is a symbolic link: mnistlab writes into no folder through one."""
    if os.path.islink(folder):
        raise StorageError(
            f"{folder}: is a symbolic link; mnistlab writes into no folder through a link "
            f"(give the folder itself); {consequence}"
        )


def make_folder(folder: Path) -> Path:
    """A folder inside an output folder (a report's figures/), created if absent; never through a link."""
    folder = Path(folder)
    refuse_link(folder, "nothing written")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{folder}: cannot create ({e.strerror})") from None
    return folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def leftover_of(name: str, suffix: str = ".tmp", names: Iterable[str] | None = None) -> bool:
    """Is `name` the temporary file of a write_atomic that never finished (`.<file>.<8 random>.tmp`),
    of one of `names` when given? A user's own `.notes.tmp` is not."""
    m = _TEMP_NAME.fullmatch(name)
    return m is not None and m.group(2) == suffix and (names is None or m.group(1) in set(names))


def remove_leftovers(folder: Path, suffix: str = ".tmp", names: Iterable[str] | None = None) -> None:
    """Temporary files of writes that a kill interrupted: never read, safe to delete, but only by
    the process that holds the folder's lock (another process may be writing one right now), and
    only files that write_atomic named."""
    if Path(folder).is_dir():
        for f in Path(folder).glob(f".*{suffix}"):
            if leftover_of(f.name, suffix, names) and f.is_file() and not f.is_symlink():
                f.unlink(missing_ok=True)

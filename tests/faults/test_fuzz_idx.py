"""The IDX reader, fuzzed: on any bytes it returns a valid array or raises DataError, nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistlab.core.errors import DataError
from mnistlab.data.idx import parse_idx

pytestmark = pytest.mark.slow  # thousands of hypothesis examples

EXAMPLES = 3000
HEADERS = [
    b"\x00\x00\x08\x01",
    b"\x00\x00\x08\x03",
    b"\x00\x00\x0d\x02",
    b"\x00\x00\x0e\x01",
    b"\x00\x00\x0b\x04",
    b"\x1f\x8b\x08\x00",
]
seen = {"n": 0}

# plausible headers with random dimensions and bodies, and plain random bytes
idx_like = st.builds(
    lambda h, dims, body: h + b"".join(d.to_bytes(4, "big") for d in dims) + body,
    st.sampled_from(HEADERS),
    st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 6), max_size=4),
    st.binary(max_size=64),
)


@settings(max_examples=EXAMPLES, deadline=None, database=None)
@given(st.binary(max_size=96) | idx_like)
def test_fuzz_idx_reader(data):
    seen["n"] += 1
    try:
        out = parse_idx(data, "fuzz")
    except DataError:
        return
    assert isinstance(out, np.ndarray) and out.ndim >= 1 and out.dtype.isnative


def test_record_fuzzing(reliability):
    assert seen["n"] >= EXAMPLES // 2  # the fuzz test above ran (hypothesis may stop early on small spaces)
    reliability.record(
        "Bad data files",
        "fuzzed IDX bytes (hypothesis)",
        "a valid array or the project's DataError, never another exception",
        trials=seen["n"],
    )

"""Bad data files: each gives exit code 2 and one line that names the file and what is wrong."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import numpy as np
import pytest

from mnistlab.data.idx import encode_idx

from .conftest import is_one_line_error, mnistlab

IMG, LBL = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _pin(tiny_env, name: str, data: bytes) -> None:
    """Re-pin a file in the dataset row: the case of a dataset whose pinned files are themselves bad."""
    path = tiny_env["tmp"] / "datasets.json"
    rows = json.loads(path.read_text())
    key = {IMG: "test_images", LBL: "test_labels"}[name]
    rows[0][key] = {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    path.write_text(json.dumps(rows))


def _tiny_labels(n: int, value: int = 1) -> bytes:
    return encode_idx(np.full(n, value, np.uint8))


# (what the row is called, how to break the files, whether the bad bytes are pinned, words the error must hold)
CASES = {
    "truncated file": (
        lambda raw: (raw / IMG).write_bytes((raw / IMG).read_bytes()[:5000]),
        None,
        "truncated or wrong file",
    ),
    "empty file": (lambda raw: (raw / LBL).write_bytes(b""), None, "0 bytes"),
    "hash mismatch (same size)": (
        lambda raw: (raw / LBL).write_bytes(_tiny_labels(200, 3)),
        None,
        "does not match the pin",
    ),
    "a directory where a file should be": (
        lambda raw: ((raw / LBL).unlink(), (raw / LBL).mkdir()),
        None,
        "is a directory",
    ),
    "wrong magic (pinned)": (
        lambda raw: (raw / LBL).write_bytes(b"\x00\x01\x08\x01" + (raw / LBL).read_bytes()[4:]),
        LBL,
        "wrong magic number",
    ),
    "image/label count mismatch (pinned)": (
        lambda raw: (raw / LBL).write_bytes(_tiny_labels(150)),
        LBL,
        "200 images but 150 labels",
    ),
    "label out of range (pinned)": (
        lambda raw: (raw / LBL).write_bytes(_tiny_labels(200, 12)),
        LBL,
        "label 12 out of range 0..9",
    ),
    "gzip where a raw file is expected (pinned)": (
        lambda raw: (raw / LBL).write_bytes(gzip.compress((raw / LBL).read_bytes())),
        LBL,
        "is gzip-compressed",
    ),
    "truncated IDX (pinned)": (
        lambda raw: (raw / IMG).write_bytes((raw / IMG).read_bytes()[:-100]),
        IMG,
        "truncated: header (200, 28, 28)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", [pytest.param("train", marks=pytest.mark.slow), "data info"])  # train: slow
def test_bad_data_file(tiny_env, reliability, case, command):
    raw = tiny_env["spec"].raw_dir(tiny_env["root"])
    breaker, pinned, words = CASES[case]
    breaker(raw)
    if pinned:
        _pin(tiny_env, pinned, (raw / pinned).read_bytes())
    args = {
        "train": ["train", "--dataset", "tiny", "--no-progress", "--run-dir", str(tiny_env["tmp"] / "r")],
        "data info": ["data", "info", "--dataset", "tiny"],
    }[command]
    p = mnistlab(args, tiny_env["env"])
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("mnistlab: error:"))
    assert is_one_line_error(p) and words in line and str(raw) in line, p.stderr
    reliability.record("Bad data files", case, "clear error (exit 2, one line naming the file)")


def test_raw_file_where_gzip_is_expected(tiny_env, reliability):
    raw = tiny_env["spec"].raw_dir(tiny_env["root"])
    shutil.move(raw / LBL, raw / (LBL + ".gz"))  # an uncompressed file under a .gz name
    p = mnistlab(["data", "fetch", "--dataset", "tiny", "--no-web"], tiny_env["env"])
    line = next(ln for ln in p.stderr.splitlines() if ln.startswith("mnistlab: error:"))
    assert is_one_line_error(p) and f"{LBL}.gz: not a valid gzip file" in line
    reliability.record(
        "Bad data files", "a raw file where a .gz is expected", "clear error (exit 2, one line naming the file)"
    )

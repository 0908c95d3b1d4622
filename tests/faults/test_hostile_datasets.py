"""Hostile dataset rows and .gz files: nothing is written outside the data root, a bomb is stopped
at the pinned size, and every bad row or stream is one line and exit 2. In-process (the CLI's main)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
from dataclasses import asdict

import pytest

from mnistlab.data import fetching

from .conftest import one_line_error

LBL = "t10k-labels-idx1-ubyte"


@pytest.fixture
def rows(tiny, tmp_path, monkeypatch):
    """A datasets file whose one row is the tiny dataset under the name 'extra'; returns (row, write)."""
    spec, root = tiny
    row = json.loads(json.dumps({**asdict(spec), "name": "extra"}))
    path = tmp_path / "datasets.json"
    monkeypatch.setenv("MNISTLAB_DATASETS_FILE", str(path))

    def write(content) -> None:
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())

    write([row])
    return row, write


def _planted(tmp_path, payload: bytes):
    """A file the fetcher must never create outside the data root, with a .gz source beside it."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / (LBL + ".gz")).write_bytes(gzip.compress(payload))
    return outside / LBL


@pytest.mark.parametrize("how", ["absolute file name", "file name with ../", "folder ../", "absolute folder"])
def test_row_cannot_write_outside_the_data_root(rows, tiny, tmp_path, capsys, reliability, how):
    row, write = rows
    spec, root = tiny
    payload = b"planted by a dataset row\n"
    target = _planted(tmp_path, payload)
    pin = {"name": LBL, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    if how == "absolute file name":
        row["test_labels"] = {**pin, "name": str(target)}
    elif how == "file name with ../":
        row["test_labels"] = {**pin, "name": f"../../../outside/{LBL}"}
    elif how == "folder ../":
        row["folder"], row["test_labels"] = "../outside", pin
    else:
        row["folder"], row["test_labels"] = str(tmp_path / "outside"), pin
    write([row])
    line = one_line_error(capsys, ["data", "fetch", "--dataset", "extra", "--no-web"])
    assert "must be a plain" in line and "extra" in line, line
    assert not target.exists() and not list(target.parent.glob(".*"))
    reliability.record(
        "Security: dataset rows",
        f"a row with an {how}" if how[0] == "a" else f"a row with a {how}",
        "refused before any disk or network work (exit 2, one line); nothing written",
    )


def test_symlinked_folder_cannot_lead_outside(rows, tiny, tmp_path, capsys, reliability):
    row, write = rows
    spec, root = tiny
    outside = tmp_path / "elsewhere"
    (outside / "raw").mkdir(parents=True)
    for f in spec.files:  # every file available as a local .gz, so a fetch would write all four
        (outside / "raw" / (f.name + ".gz")).write_bytes(gzip.compress((spec.raw_dir(root) / f.name).read_bytes()))
    (root / "EXTRA").symlink_to(outside)
    row["folder"] = "EXTRA"
    write([row])
    line = one_line_error(capsys, ["data", "fetch", "--dataset", "extra", "--no-web"])
    assert "outside the data root" in line, line
    assert sorted(p.name for p in (outside / "raw").iterdir()) == sorted(f.name + ".gz" for f in spec.files)
    reliability.record(
        "Security: dataset rows",
        "a plain folder name that is a symlink out of the data root",
        "refused before any write (exit 2, one line); nothing written",
    )


BAD_FILES = {
    "`{}`": {},
    "`[1]`": [1],
    "`null`": None,
    "not UTF-8": b"\xff\xfe[]",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_datasets_file(rows, capsys, reliability, case):
    rows[1](BAD_FILES[case])
    line = one_line_error(capsys, ["data", "info", "--dataset", "tiny"])
    assert "MNISTLAB_DATASETS_FILE" in line, line
    reliability.record(
        "Bad dataset rows ($MNISTLAB_DATASETS_FILE)",
        f"a datasets file that is {case}",
        "clear error (exit 2, one line naming the file)",
    )


BAD_ROWS = {
    "`std` 0": ("std", 0, "'std' must be a finite number above 0"),
    "a non-finite `mean`": ("mean", float("nan"), "'mean' must be a finite number"),
    "an infinite `std`": ("std", float("inf"), "'std' must be"),
    "`size` true": ("train_labels", "size-true", "size must be a whole number"),
    "a sha256 that is not hex": ("train_labels", "sha-bad", "sha256 must be 64"),
    "the name of a built-in dataset (`mnist`)": ("name", "mnist", "redefines the built-in dataset 'mnist'"),
    "an unknown field": ("colour", "red", "unknown field 'colour'"),
    "one class": ("classes", ["only"], "'classes' must hold 2 to 256 values"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_dataset_row(rows, capsys, reliability, case):
    row, write = rows
    key, value, words = BAD_ROWS[case]
    if value == "size-true":
        row[key] = {**row[key], "size": True}
    elif value == "sha-bad":
        row[key] = {**row[key], "sha256": "z" * 64}
    else:
        row[key] = value
    write([row])
    line = one_line_error(capsys, ["data", "info", "--dataset", "tiny"])
    assert words in line, line
    reliability.record(
        "Bad dataset rows ($MNISTLAB_DATASETS_FILE)",
        f"a row with {case}",
        "clear error (exit 2, one line naming the row and field)",
    )


def _bomb_source(raw, spec):
    """t10k labels missing, and a local .gz of them that expands to 4 MiB: far beyond their pinned
    size (random bytes, so that the compressed stream is long enough to show where reading stopped)."""
    (raw / LBL).unlink()
    (raw / (LBL + ".gz")).write_bytes(gzip.compress(random.Random(0).randbytes(4 << 20), compresslevel=1))


def test_decompression_bomb_stops_at_the_pinned_size(tiny, capsys, monkeypatch, reliability):
    spec, root = tiny
    raw = spec.raw_dir(root)
    _bomb_source(raw, spec)
    written, produced = [], []
    real_install, real_gunzip = fetching.install_bytes, fetching.gunzip_bounded
    monkeypatch.setattr(fetching, "install_bytes", lambda data, *a: (written.append(len(data)), real_install(data, *a)))

    def watched(source, limit, name):
        try:
            out = real_gunzip(source, limit, name)
        except Exception:
            produced.append(source.tell())  # how far into the compressed stream it read
            raise
        return out

    monkeypatch.setattr(fetching, "gunzip_bounded", watched)
    line = one_line_error(capsys, ["data", "fetch", "--dataset", "tiny", "--no-web"])
    assert "decompresses to more than" in line and str(raw / LBL) in line, line
    assert written == [] and not (raw / LBL).exists() and not list(raw.glob(".*.part"))
    assert produced and produced[0] < (raw / (LBL + ".gz")).stat().st_size  # stopped early, not read to the end
    reliability.record(
        "Decompression",
        "a local `.gz` that expands to 20,000x its pinned size",
        "stopped as the output passed the pinned size; nothing written; clear error",
    )


def test_decompression_bomb_from_a_mirror(tiny, monkeypatch, reliability):
    spec, root = tiny
    (spec.raw_dir(root) / LBL).unlink()
    spec = spec.__class__(**{**spec.__dict__, "mirrors": ("http://mirror.invalid/",)})
    body = io.BytesIO(gzip.compress(random.Random(1).randbytes(4 << 20), compresslevel=1))

    class Response:
        def __enter__(self):
            return body

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(fetching.urllib.request, "urlopen", lambda url, timeout: Response())
    logs = []
    with pytest.raises(fetching.DataError, match="could not fetch"):
        fetching.fetch(spec, root, log=logs.append, web=True)
    assert any("decompresses to more than" in m for m in logs), logs
    assert body.tell() < len(body.getvalue())  # the download stopped early
    reliability.record(
        "Decompression",
        "a mirror serving a bomb",
        "download stopped at the pinned size; the mirror is reported as failed; nothing written",
    )


@pytest.mark.parametrize("case", ["a corrupt deflate body after a valid gzip header", "a truncated gzip stream"])
def test_corrupt_gzip(tiny, capsys, reliability, case):
    spec, root = tiny
    raw = spec.raw_dir(root)
    good = gzip.compress((raw / LBL).read_bytes())
    (raw / LBL).unlink()
    bad = good[:10] + b"\xff" * 40 + good[-8:] if case.startswith("a corrupt") else good[: len(good) // 2]
    (raw / (LBL + ".gz")).write_bytes(bad)
    line = one_line_error(capsys, ["data", "fetch", "--dataset", "tiny", "--no-web"])
    assert f"{LBL}.gz: not a valid gzip file" in line, line
    reliability.record("Decompression", case, "clear error (exit 2, one line naming the file)")

"""kill -9 in the middle of writing each data file: the next fetch completes, and no unverified
file ever sits under a final name."""

from __future__ import annotations

import gzip
import random
import signal

import pytest

from mnistlab.core.errors import DataError
from mnistlab.data.verify import check_file

from .conftest import mnistlab

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def only_verified_files(spec, root) -> None:
    for f in spec.files:
        path = spec.raw_dir(root) / f.name
        if path.exists():
            check_file(path, f)  # raises DataError if anything unverified took a final name


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.slow
def test_kill_fetch_mid_write(tiny_env, reliability, seed):
    spec, root, env = tiny_env["spec"], tiny_env["root"], tiny_env["env"]
    raw = spec.raw_dir(root)
    rng = random.Random(seed)
    missing = rng.sample(FILES, rng.randint(1, 4))  # the files the fetch must produce, from local .gz copies
    for name in missing:
        (raw / (name + ".gz")).write_bytes(gzip.compress((raw / name).read_bytes()))
        (raw / name).unlink()
    victim = rng.choice(missing)
    p = mnistlab(["data", "fetch", "--dataset", "tiny", "--no-web"], env, kill_at=f"write:{victim}")
    assert p.returncode == -signal.SIGKILL
    assert not (raw / victim).exists() and list(raw.glob(f".{victim}.*.part"))  # half a file, never under its name
    only_verified_files(spec, root)
    p = mnistlab(
        ["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tiny_env["tmp"] / "r")], env
    )  # any use of the data verifies first, then fetches
    assert p.returncode == 0, p.stderr
    only_verified_files(spec, root)
    assert all((raw / n).exists() for n in FILES) and not list(raw.glob(".*.part"))
    reliability.record(
        "Killed with SIGKILL during a data fetch",
        "while writing a data file (random file, seeded)",
        "nothing lost: the next fetch completed; no unverified file used",
    )


def test_unverified_bytes_never_replace_a_file(tiny_env, reliability):
    spec, root = tiny_env["spec"], tiny_env["root"]
    raw = spec.raw_dir(root)
    good = (raw / FILES[1]).read_bytes()
    (raw / FILES[1]).unlink()
    (raw / (FILES[1] + ".gz")).write_bytes(gzip.compress(good[:-1] + bytes([good[-1] ^ 1])))  # a wrong source
    p = mnistlab(["data", "fetch", "--dataset", "tiny", "--no-web"], tiny_env["env"])
    assert p.returncode == 2 and not (raw / FILES[1]).exists() and not list(raw.glob(".*.part"))
    with pytest.raises(DataError):
        check_file(raw / FILES[1], spec.train_labels)
    reliability.record(
        "Killed with SIGKILL during a data fetch",
        "a source serving wrong bytes",
        "clear error; the file is not written",
    )

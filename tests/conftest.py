"""Shared fixtures: a tiny MNIST-shaped dataset written as real IDX files, with its own pins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import datasets
from mnistlab.data.datasets import DatasetSpec, FileSpec
from mnistlab.data.idx import encode_idx

TINY_TRAIN, TINY_TEST = 640, 200


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: class k lights a 6x6 block at a position set by k, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 2 + 8 * (k // 4), 2 + 6 * (k % 4)
        images[i, r : r + 6, c : c + 6] = 230
    return images, labels


def tiny_bench_argv(model: str, out: Path | str) -> list[str]:
    """`mnistlab bench` of one model on the resident pipeline on the CPU: 2 steps, 1 repeat, no warm-up, tiny data."""
    argv = ["bench", "--models", model, "--devices", "cpu", "--pipelines", "resident", "--steps", "2"]
    return [*argv, "--repeats", "1", "--warmup", "0", "--dataset", "tiny", "--out", str(out)]


def tiny_sweep_argv(*extra: str, trials: int = 1) -> list[str]:
    """`mnistlab sweep` of study s over two learning rates, one epoch per trial on the tiny dataset on the CPU."""
    argv = ["sweep", "--study", "s", "--trials", str(trials), "--param", "lr=0.01,0.02", "--dataset", "tiny"]
    return [*argv, "--epochs", "1", "--device", "cpu", *extra]


def tiny_train_argv(run_dir: Path | str, *extra: str) -> list[str]:
    """`mnistlab train` for one quiet epoch on the tiny dataset on the CPU, into `run_dir`."""
    return [
        "train",
        "--dataset",
        "tiny",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
        "--run-dir",
        str(run_dir),
    ]


def operators(trace: bytes) -> set[str]:
    """The names of the operators a profiler trace recorded (`aten::addmm`, ...)."""
    events = json.loads(trace)["traceEvents"]
    return {e["name"] for e in events if isinstance(e, dict) and str(e.get("name", "")).startswith("aten::")}


def write_tiny_dataset(
    root: Path, name: str = "tiny", n_train: int = TINY_TRAIN, n_test: int = TINY_TEST
) -> DatasetSpec:
    raw = root / "TINY" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    tr_x, tr_y = make_images(n_train, 1)
    te_x, te_y = make_images(n_test, 2)
    specs = []
    for fname, arr in (
        ("train-images-idx3-ubyte", tr_x),
        ("train-labels-idx1-ubyte", tr_y),
        ("t10k-images-idx3-ubyte", te_x),
        ("t10k-labels-idx1-ubyte", te_y),
    ):
        data = encode_idx(arr)
        (raw / fname).write_bytes(data)
        specs.append(FileSpec(fname, hashlib.sha256(data).hexdigest(), len(data)))
    return DatasetSpec(
        name=name,
        folder="TINY",
        train_images=specs[0],
        train_labels=specs[1],
        test_images=specs[2],
        test_labels=specs[3],
        mean=0.2,
        std=0.3,
        classes=tuple(str(i) for i in range(10)),
        mirrors=(),
    )


@pytest.fixture
def tiny(tmp_path, monkeypatch) -> tuple[DatasetSpec, Path]:
    """A registered dataset 'tiny' under tmp_path/data; MNISTLAB_DATA points there."""
    root = tmp_path / "data"
    spec = write_tiny_dataset(root)
    monkeypatch.setitem(datasets.DATASETS, "tiny", spec)
    monkeypatch.setenv("MNISTLAB_DATA", str(root))
    monkeypatch.chdir(tmp_path)
    return spec, root


@pytest.fixture(scope="module")
def tiny_module(tmp_path_factory) -> tuple[DatasetSpec, Path]:
    """The `tiny` dataset for a whole test module, so that its expensive fixtures (a bench, a lab)
    are computed once and shared; a test that changes what it holds must copy it first."""
    base = tmp_path_factory.mktemp("tiny-module")
    root = base / "data"
    spec = write_tiny_dataset(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "tiny", spec)
        mp.setenv("MNISTLAB_DATA", str(root))
        mp.chdir(base)
        yield spec, root


@pytest.fixture
def restore_determinism(monkeypatch):
    """enable_deterministic changes process-wide settings: put them back after the test."""
    import torch

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that monkeypatch restores the variable's absence
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.backends.cudnn.benchmark = before[1]
    from mnistlab.core import threads

    threads.apply(None)  # --deterministic pinned the thread count for the process


@pytest.fixture
def pinned_threads():
    """One thread count for the whole test: mnistlab chooses it per epoch from the machine's load, and
    a different count rounds sums differently, so a test of bit-identical results pins it."""
    import torch

    from mnistlab.core import threads

    threads.apply(torch.get_num_threads())
    yield
    threads.apply(None)

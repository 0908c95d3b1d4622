"""Integration on the real MNIST: fetched once into the data root (cached between runs)."""

import pytest

from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.fetching import fetch
from mnistlab.data.loader import read_split
from mnistlab.jobs.train import train_run
from mnistlab.training.config import TrainConfig

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # slow: the real MNIST, fetched (once) and trained on


@pytest.fixture(scope="module")
def mnist_root():
    spec, root = get_dataset("mnist"), data_root()
    fetch(spec, root, log=print)
    return root


def test_real_mnist_is_the_official_one(mnist_root):
    spec = get_dataset("mnist")
    train, test = read_split(spec, mnist_root, train=True), read_split(spec, mnist_root, train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert int(train.labels[0]) == 5 and test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    mean = train.images.double().div(255).mean().item()
    assert abs(mean - 0.130660) < 1e-5


def test_one_mlp_epoch_reaches_90_percent(mnist_root, tmp_path):
    run = train_run(
        TrainConfig(epochs=1, device="cpu", data_dir=str(mnist_root)), run_dir=tmp_path / "r", log=print, progress=False
    )
    row = run.metrics()[0]
    assert row["val_accuracy"] >= 0.90
    assert row["steps"] == 750  # 48,000 / 64

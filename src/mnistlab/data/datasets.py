"""The dataset table: what each MNIST-family dataset is made of and where it lives.

Adding a dataset is adding a row. The on-disk layout matches torchvision's
(`<root>/MNIST/raw/<file>`), so an existing torchvision data root works as it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mnistlab.core.errors import ConfigError

DATA_ENV_VAR = "MNISTLAB_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/mnistlab").expanduser()


@dataclass(frozen=True)
class FileSpec:
    name: str  # uncompressed IDX file name
    sha256: str  # of the uncompressed file
    size: int


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # the CLI name
    folder: str  # torchvision's folder name under the data root
    train_images: FileSpec
    train_labels: FileSpec
    test_images: FileSpec
    test_labels: FileSpec
    mean: float  # of pixel/255 over the 60k training images
    std: float
    classes: tuple[str, ...]
    mirrors: tuple[str, ...]  # base URLs serving `<file>.gz`

    @property
    def files(self) -> tuple[FileSpec, ...]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)

    def raw_dir(self, root: Path) -> Path:
        return Path(root) / self.folder / "raw"


_IMG_TRAIN, _LBL_TRAIN = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
_IMG_TEST, _LBL_TEST = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        folder="MNIST",
        train_images=FileSpec(_IMG_TRAIN, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47040016),
        train_labels=FileSpec(_LBL_TRAIN, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60008),
        test_images=FileSpec(_IMG_TEST, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7840016),
        test_labels=FileSpec(_LBL_TEST, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10008),
        mean=0.1307,
        std=0.3081,
        classes=tuple(str(d) for d in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        folder="FashionMNIST",
        train_images=FileSpec(_IMG_TRAIN, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47040016),
        train_labels=FileSpec(_LBL_TRAIN, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60008),
        test_images=FileSpec(_IMG_TEST, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7840016),
        test_labels=FileSpec(_LBL_TEST, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10008),
        mean=0.2860,
        std=0.3530,
        classes=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}


EXTRA_DATASETS_ENV_VAR = "MNISTLAB_DATASETS_FILE"


def spec_from_dict(d: dict) -> DatasetSpec:
    """A dataset row from JSON: the DatasetSpec fields, with each file as {name, sha256, size}."""
    try:
        files = {k: FileSpec(**d[k]) for k in ("train_images", "train_labels", "test_images", "test_labels")}
        return DatasetSpec(name=d["name"], folder=d["folder"], mean=float(d["mean"]), std=float(d["std"]),
                           classes=tuple(d["classes"]), mirrors=tuple(d.get("mirrors", ())), **files)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"dataset row {d.get('name', '?')!r} is malformed ({e!r})") from None


def _extra_datasets() -> dict[str, DatasetSpec]:
    """Rows from the JSON file named by $MNISTLAB_DATASETS_FILE: more datasets without code."""
    path = os.environ.get(EXTRA_DATASETS_ENV_VAR)
    if not path:
        return {}
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"${EXTRA_DATASETS_ENV_VAR}={path}: cannot read ({e})") from None
    return {spec.name: spec for spec in map(spec_from_dict, rows)}


def all_datasets() -> dict[str, DatasetSpec]:
    return {**DATASETS, **_extra_datasets()}


def get_dataset(name: str) -> DatasetSpec:
    table = all_datasets()
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(table)}") from None


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: the explicit argument, then $MNISTLAB_DATA, then ~/.cache/mnistlab."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR

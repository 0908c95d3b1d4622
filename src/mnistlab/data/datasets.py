"""The dataset table: what each MNIST-family dataset is made of and where it lives.

Adding a dataset is adding a row. The on-disk layout matches torchvision's
(`<root>/MNIST/raw/<file>`), so an existing torchvision data root works as it is.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mnistlab.core.errors import ConfigError, ResultFileError
from mnistlab.core.rundir import read_json
from mnistlab.core.schema import Check, Closed, Range, check, is_int

DATA_ENV_VAR = "MNISTLAB_DATA"


def default_data_dir() -> Path:
    """$XDG_CACHE_HOME/mnistlab, else ~/.cache/mnistlab (the XDG base directory spec: a relative
    $XDG_CACHE_HOME is invalid and ignored)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path("~/.cache").expanduser()) / "mnistlab"


@dataclass(frozen=True)
class FileSpec:
    name: str  # uncompressed IDX file name
    sha256: str  # of the uncompressed file
    size: int


@dataclass(frozen=True)
class DataShape:
    """What a model sees of a dataset: one sample's (channels, height, width) and how many classes.
    Models, their checks, summaries, FLOP counts and benches take it from the dataset's row."""

    sample: tuple[int, ...]
    classes: int


MNIST_IMAGE_SIZE = (28, 28)  # every built-in row's; a row of one's own may give its own "image_size"


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
    image_size: tuple[int, int] = MNIST_IMAGE_SIZE  # (height, width) of every image, checked on read

    @property
    def shape(self) -> DataShape:
        return DataShape((1, *self.image_size), len(self.classes))

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
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
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
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    ),
}


EXTRA_DATASETS_ENV_VAR = "MNISTLAB_DATASETS_FILE"
MAX_FILE_SIZE = 1 << 32  # a pinned file above 4 GiB is not an MNIST-family file


_FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def plain_name(value: object) -> bool:
    """A single path component: no separator, not `.` or `..`, no NUL or control character.
    Names in dataset rows must be plain, so that every path built from them stays in the data root."""
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
        and not any(ord(c) < 32 or ord(c) == 127 for c in value)
    )


_FILE = Closed(
    {
        "name": Check(
            lambda n: plain_name(n) and not n.endswith((".gz", ".part", ".tmp")) and not n.startswith("."),
            "a plain file name",
        ),
        "sha256": Check(lambda h: isinstance(h, str) and bool(_SHA256.fullmatch(h)), "64 lowercase hex digits"),
        "size": Range(1, MAX_FILE_SIZE, whole=True),
    }
)
_PLAIN = Check(plain_name, "a plain name (no '/', '..' or control characters)")
ROW_SCHEMA = Closed(
    {
        "name": _PLAIN,
        "folder": _PLAIN,
        **dict.fromkeys(_FILE_KEYS, _FILE),
        "mean": "number",
        "std": "positive",
        "classes": ["text", (2, 256)],
        "mirrors?": [
            Check(
                lambda m: isinstance(m, str) and m.startswith(("https://", "http://")) and m.endswith("/"),
                "an http(s) base URL ending in '/'",
            )
        ],
        "image_size?": [Check(lambda v: is_int(v) and 4 <= v <= 1024, "a whole number in 4..1024"), (2, 2)],
    }
)


def spec_from_dict(d: object, where: str = "dataset row") -> DatasetSpec:
    """A dataset row from JSON, validated whole by ROW_SCHEMA: the DatasetSpec fields, with each file as
    {name, sha256, size}. Anything malformed is a ConfigError naming the row and the field."""
    label = f"{where} {d.get('name')!r}" if isinstance(d, dict) and isinstance(d.get("name"), str) else where
    check(d, ROW_SCHEMA, label, ConfigError)
    assert isinstance(d, dict)
    files = {k: FileSpec(**d[k]) for k in _FILE_KEYS}
    if len({f.name for f in files.values()}) != len(files):
        raise ConfigError(f"{label}: files must have four different names")
    size = d.get("image_size", list(MNIST_IMAGE_SIZE))
    return DatasetSpec(
        name=d["name"],
        folder=d["folder"],
        mean=float(d["mean"]),
        std=float(d["std"]),
        classes=tuple(d["classes"]),
        mirrors=tuple(d.get("mirrors", [])),
        image_size=(size[0], size[1]),
        **files,
    )


def _extra_datasets() -> dict[str, DatasetSpec]:
    """Rows from the JSON file named by $MNISTLAB_DATASETS_FILE: more datasets without code.
    The file is untrusted: it must be a list of valid rows, and may not redefine a built-in
    dataset (whose pins would otherwise be silently replaced) or define one name twice."""
    path = os.environ.get(EXTRA_DATASETS_ENV_VAR)
    if not path:
        return {}
    where = f"${EXTRA_DATASETS_ENV_VAR}={path}"
    try:
        rows = read_json(Path(path))  # a regular file of bounded size: never a FIFO that blocks
    except ResultFileError as e:
        raise ConfigError(f"${EXTRA_DATASETS_ENV_VAR}={e}") from None
    if not isinstance(rows, list):
        raise ConfigError(f"{where}: expected a list of dataset rows, found {type(rows).__name__}")
    out: dict[str, DatasetSpec] = {}
    for i, row in enumerate(rows):
        spec = spec_from_dict(row, f"{where}: row {i}")
        if spec.name in DATASETS:
            raise ConfigError(f"{where}: row {i} redefines the built-in dataset {spec.name!r}; give it another name")
        if spec.name in out:
            raise ConfigError(f"{where}: row {i} defines {spec.name!r} a second time")
        out[spec.name] = spec
    return out


def all_datasets() -> dict[str, DatasetSpec]:
    return {**DATASETS, **_extra_datasets()}


def get_dataset(name: str) -> DatasetSpec:
    table = all_datasets()
    try:
        return table[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(table)}") from None


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root, as an absolute path (a job fixes it as it starts, so that a user's model that changes
    the working directory cannot move it): the explicit argument, then $MNISTLAB_DATA, then
    $XDG_CACHE_HOME/mnistlab, then ~/.cache/mnistlab."""
    if explicit:
        return Path(explicit).expanduser().absolute()
    env = os.environ.get(DATA_ENV_VAR)
    return (Path(env).expanduser() if env else default_data_dir()).absolute()

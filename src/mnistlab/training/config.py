"""One frozen training configuration, validated once, passed explicitly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.defaults import COMPILE_MODES, DEFAULT_BATCH_SIZE, DEVICES, MAX_BATCH_SIZE, PRECISIONS
from mnistlab.core.distributed import DEFAULT_TIMEOUT_S
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import MAX_EPOCHS
from mnistlab.core.schema import Check, Closed, Range, check, is_number, maybe, one_of
from mnistlab.data.datasets import get_dataset

# the epoch's shuffle seed is seed * 1_000_003 + epoch, and torch seeds are 64-bit: keep far inside
MAX_SEED = 2**32 - 1
MAX_STEPS = 2**31 - 1  # --subset, --max-steps, --log-every, --checkpoint-every: far beyond any real run
MAX_TIMEOUT_S = 7 * 24 * 3600  # --dist-timeout: a week; a larger one overflows the process group's timer
# keys every config.json has had since the first release; fields added later take their defaults
REQUIRED_KEYS = ("model", "dataset", "epochs", "batch_size", "lr", "momentum", "val_fraction", "seed", "device")


def _whole(low: int, high: int) -> Range:
    return Range(low, high, whole=True)


def _open(low: float, high: float) -> Check:
    return Check(lambda v: is_number(v) and low < v < high, f"a number strictly between {low:g} and {high:g}")


# every field's type and range: what config.json, a checkpoint's config, the command line and Python may give
_FIELDS = {
    "model": "text",
    "dataset": "text",
    "epochs": _whole(1, MAX_EPOCHS),
    "batch_size": _whole(1, MAX_BATCH_SIZE),
    "lr": _open(0, 1e6),
    "momentum": Check(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "val_fraction": _open(0, 1),
    "seed": _whole(0, MAX_SEED),
    "device": one_of(DEVICES),
    "early_stop": maybe(_whole(1, MAX_EPOCHS)),
    "data_dir": "text?",
    "subset": maybe(_whole(1, MAX_STEPS)),
    "max_steps": maybe(_whole(1, MAX_STEPS)),
    "log_every": _whole(1, MAX_STEPS),
    "checkpoint_every": maybe(_whole(1, MAX_STEPS)),
    "dist_timeout": _whole(1, MAX_TIMEOUT_S),
    "deterministic": "bool",
    "precision": one_of(PRECISIONS),
    "channels_last": "bool",
    "compile": one_of(COMPILE_MODES),
    "cuda_graphs": "bool",
}
CONFIG_SCHEMA = Closed({k if k in REQUIRED_KEYS else f"{k}?": v for k, v in _FIELDS.items()})


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A field with the help text its command-line option shows (the CLI is built from these)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    model: str = _opt("mlp", "mlp, cnn, or your own: package.module:factory or path/to/file.py:Name")
    dataset: str = _opt("mnist", "dataset name")
    epochs: int = _opt(10, "epochs to train (with --resume: how many more)")
    batch_size: int = _opt(DEFAULT_BATCH_SIZE, "samples per optimizer step")
    lr: float = _opt(0.01, "SGD learning rate")
    momentum: float = _opt(0.5, "SGD momentum, in [0, 1)")
    val_fraction: float = _opt(0.2, "share of the official training set held out for validation")
    seed: int = _opt(0, "seed of the split, the initial weights and the batch order")
    device: str = _opt("auto", "where to train (auto: cuda, then mps, then cpu)", choices=DEVICES)
    early_stop: int | None = _opt(
        None, "stop after this many epochs without a better validation loss", metavar="PATIENCE"
    )
    data_dir: str | None = _opt(
        None, "data root (default: $MNISTLAB_DATA, else $XDG_CACHE_HOME/mnistlab, else ~/.cache/mnistlab)"
    )
    subset: int | None = _opt(None, "keep only the first N samples of each split (quick runs, tests)", metavar="N")
    max_steps: int | None = _opt(None, "at most N optimizer steps per epoch (quick runs)", metavar="N")
    log_every: int = _opt(100, "record the train loss every N steps, as the notebook does", metavar="N")
    checkpoint_every: int | None = _opt(
        None,
        "also write last.pt every N steps within an epoch: a kill costs at "
        "most N steps, and a resume continues mid-epoch",
        metavar="STEPS",
    )
    dist_timeout: int = _opt(
        DEFAULT_TIMEOUT_S,
        "under torchrun: seconds a process waits for its peers (start-up, "
        "each exchange) before the run fails with one line",
        metavar="SECONDS",
    )
    deterministic: bool = _opt(False, "use only deterministic kernels (slower; same result on every rerun)")
    # speed levers (training/levers.py); a lever a device lacks is a ConfigError when the device is known
    precision: str = _opt(
        "32",
        "32: float32; bf16-mixed / 16-mixed: autocast to bfloat16 / float16 (16-mixed: CUDA, with a GradScaler)",
        choices=PRECISIONS,
    )
    channels_last: bool = _opt(False, "keep conv weights and inputs in channels-last (NHWC) memory format")
    compile: str = _opt(
        "off", "torch.compile the model's training forward/backward in this mode", choices=COMPILE_MODES
    )
    cuda_graphs: bool = _opt(
        False, "CUDA only: capture the whole training step (forward, backward, optimizer) once and replay it"
    )

    def __post_init__(self) -> None:
        from mnistlab.training.models import check_model_spec  # torch: only when a config is built

        check(self.to_dict(), CONFIG_SCHEMA, error=ConfigError)
        check_model_spec(self.model)  # its form only: the code is imported when the model is built
        get_dataset(self.dataset)  # an unknown one is a ConfigError naming the known ones

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> TrainConfig:
        """A config from JSON (config.json, a checkpoint): every key known, the core ones present, every
        value of its field's type and in its range (no `true` for a number), then the semantic checks."""
        return cls(**check(d, CONFIG_SCHEMA, where, ConfigError))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def load_run_config(path: Path | str) -> TrainConfig:
    """A run's config.json as a TrainConfig; any problem is one line naming the file."""
    from mnistlab.core.rundir import read_json_object

    try:
        return TrainConfig.from_dict(read_json_object(Path(path)), str(path))
    except ConfigError as e:
        raise ConfigError(e if str(e).startswith(str(path)) else f"{path}: {e}") from None


def check_run_config(path: Path | str) -> dict[str, Any]:
    """A run's config.json checked for types and the core keys only (a report may describe a run whose
    dataset or model is not registered here); returns the settings with defaults filled in."""
    from mnistlab.core.rundir import read_json_object

    d = check(read_json_object(Path(path)), CONFIG_SCHEMA, str(path), ConfigError)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {**defaults, **d}

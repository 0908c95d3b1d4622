"""One frozen training configuration, validated once, passed explicitly."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.distributed import DEFAULT_TIMEOUT_S
from mnistlab.core.defaults import COMPILE_MODES, DEFAULT_BATCH_SIZE, DEVICES, MAX_BATCH_SIZE, PRECISIONS
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import MAX_EPOCHS
from mnistlab.data.datasets import all_datasets

# the epoch's shuffle seed is seed * 1_000_003 + epoch, and torch seeds are 64-bit: keep far inside
MAX_SEED = 2**32 - 1
# keys every config.json has had since the first release; fields added later take their defaults
REQUIRED_KEYS = ("model", "dataset", "epochs", "batch_size", "lr", "momentum", "val_fraction", "seed", "device")


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
    early_stop: int | None = _opt(None, "stop after this many epochs without a better validation loss",
                                  metavar="PATIENCE")
    data_dir: str | None = _opt(None, "data root (default: $MNISTLAB_DATA, else $XDG_CACHE_HOME/mnistlab, "
                                      "else ~/.cache/mnistlab)")
    subset: int | None = _opt(None, "keep only the first N samples of each split (quick runs, tests)", metavar="N")
    max_steps: int | None = _opt(None, "at most N optimizer steps per epoch (quick runs)", metavar="N")
    log_every: int = _opt(100, "record the train loss every N steps, as the notebook does", metavar="N")
    checkpoint_every: int | None = _opt(None, "also write last.pt every N steps within an epoch: a kill costs at "
                                        "most N steps, and a resume continues mid-epoch", metavar="STEPS")
    dist_timeout: int = _opt(DEFAULT_TIMEOUT_S, "under torchrun: seconds a process waits for its peers (start-up, "
                             "each exchange) before the run fails with one line", metavar="SECONDS")
    deterministic: bool = _opt(False, "use only deterministic kernels (slower; same result on every rerun)")
    # speed levers (training/levers.py); a lever a device lacks is a ConfigError when the device is known
    precision: str = _opt("32", "32: float32; bf16-mixed / 16-mixed: autocast to bfloat16 / float16 "
                          "(16-mixed: CUDA, with a GradScaler)", choices=PRECISIONS)
    channels_last: bool = _opt(False, "keep conv weights and inputs in channels-last (NHWC) memory format")
    compile: str = _opt("off", "torch.compile the model's training forward/backward in this mode",
                        choices=COMPILE_MODES)
    cuda_graphs: bool = _opt(False, "CUDA only: capture the whole training step (forward, backward, "
                             "optimizer) once and replay it")

    def __post_init__(self) -> None:
        from mnistlab.training.models import check_model_spec  # torch: only when a config is built

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)
        type_error = next(iter(config_type_errors(self.to_dict())), None)
        need(type_error is None, type_error or "")
        check_model_spec(self.model)  # its form only: the code is imported when the model is built
        datasets = all_datasets()
        need(self.dataset in datasets, f"unknown dataset {self.dataset!r}; choose one of: {', '.join(datasets)}")
        need(self.device in DEVICES, f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        for name in ("epochs", "batch_size", "seed", "log_every", "dist_timeout"):
            need(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool),
                 f"{name} must be a whole number, got {getattr(self, name)!r}")
        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.epochs <= MAX_EPOCHS, f"epochs must be at most {MAX_EPOCHS:,} (all sessions together: the most "
             f"metrics.csv rows mnistlab reads back), got {self.epochs:,}")
        need(1 <= self.batch_size <= MAX_BATCH_SIZE,
             f"batch size must be in 1..{MAX_BATCH_SIZE:,}, got {self.batch_size:,}")
        need(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {self.seed}")
        need(self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}")
        need(self.dist_timeout >= 1, f"dist timeout must be at least 1 second, got {self.dist_timeout}")
        need(isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             f"learning rate must be a positive number, got {self.lr}")
        need(isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1,
             f"momentum must be in [0, 1), got {self.momentum}")
        need(isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1,
             f"val fraction must be strictly between 0 and 1, got {self.val_fraction}")
        need(self.precision in PRECISIONS,
             f"unknown precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}")
        need(self.compile in COMPILE_MODES,
             f"unknown compile mode {self.compile!r}; choose one of: {', '.join(COMPILE_MODES)}")
        for name in ("early_stop", "subset", "max_steps", "checkpoint_every"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and v >= 1), f"{name.replace('_', ' ')} must be at least 1, got {v}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> TrainConfig:
        """A config from JSON (config.json, a checkpoint): every key known, the core ones present,
        every value of its field's type (no `true` for a number), then the usual range checks."""
        problems = config_type_errors(d, require=True)
        if problems:
            raise ConfigError(problems[0])
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


_KINDS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}


def config_type_errors(d: Any, require: bool = False) -> list[str]:
    """What is wrong with `d` as TrainConfig fields: not an object, unknown or (with `require`)
    missing keys, or a value not of its field's declared type. A bool is never a number."""
    if not isinstance(d, dict):
        from mnistlab.core.rundir import json_kind

        return [f"expected a JSON object of settings, found {json_kind(d)}"]
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(k for k in d if k not in fields)
    if unknown:
        return [f"unknown config keys {unknown}; valid keys: {', '.join(sorted(fields))}"]
    out = [f"missing the setting {k!r}" for k in REQUIRED_KEYS if require and k not in d]
    for name, value in d.items():
        kinds = [_KINDS.get(k.strip()) for k in str(fields[name].type).split("|")]
        if any(k is None for k in kinds):
            continue  # a type this check does not know: the range checks still apply
        allowed = tuple(t for k in kinds for t in k)
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and bool not in allowed):
            wanted = " or ".join(k.strip().replace("None", "null").replace("str", "text")
                                 .replace("int", "a whole number").replace("float", "a number")
                                 .replace("bool", "true/false") for k in str(fields[name].type).split("|"))
            out.append(f"{name} must be {wanted}, got {value!r}")
    return out


def load_run_config(path: Path | str) -> TrainConfig:
    """A run's config.json as a TrainConfig; any problem is one line naming the file."""
    from mnistlab.core.rundir import read_json_object

    try:
        return TrainConfig.from_dict(read_json_object(Path(path)))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def check_run_config(path: Path | str) -> dict[str, Any]:
    """A run's config.json checked for types and the core keys only (a report may describe a run whose
    dataset or model is not registered here); returns the settings with defaults filled in."""
    from mnistlab.core.rundir import read_json_object

    d = read_json_object(Path(path))
    problems = config_type_errors(d, require=True)
    if problems:
        raise ConfigError(f"{path}: {problems[0]}")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    return {**defaults, **d}

"""One frozen training configuration, validated once, passed explicitly."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mnistlab.core.defaults import COMPILE_MODES, DEFAULT_BATCH_SIZE, DEVICES, PRECISIONS
from mnistlab.core.errors import ConfigError
from mnistlab.data.datasets import all_datasets


def _opt(default: Any, help: str, **meta: Any) -> Any:
    """A field with the help text its command-line option shows (the CLI is built from these)."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class TrainConfig:
    model: str = _opt("mlp", "model name from the registry")
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
    data_dir: str | None = _opt(None, "data root (default: $MNISTLAB_DATA, else ~/.cache/mnistlab)")
    subset: int | None = _opt(None, "keep only the first N samples of each split (quick runs, tests)", metavar="N")
    max_steps: int | None = _opt(None, "at most N optimizer steps per epoch (quick runs)", metavar="N")
    log_every: int = _opt(100, "record the train loss every N steps, as the notebook does", metavar="N")
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
        from mnistlab.training.models import list_models  # torch: only when a config is built

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)
        need(self.model in list_models(), f"unknown model {self.model!r}; choose one of: {', '.join(list_models())}")
        datasets = all_datasets()
        need(self.dataset in datasets, f"unknown dataset {self.dataset!r}; choose one of: {', '.join(datasets)}")
        need(self.device in DEVICES, f"unknown device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        for name in ("epochs", "batch_size", "seed", "log_every"):
            need(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool),
                 f"{name} must be a whole number, got {getattr(self, name)!r}")
        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}")
        need(self.seed >= 0, f"seed must be 0 or more, got {self.seed}")
        need(self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}")
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
        for name in ("deterministic", "channels_last", "cuda_graphs"):
            need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("early_stop", "subset", "max_steps"):
            v = getattr(self, name)
            need(v is None or (isinstance(v, int) and v >= 1), f"{name.replace('_', ' ')} must be at least 1, got {v}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; valid keys: {', '.join(sorted(known))}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

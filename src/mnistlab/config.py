"""One frozen training configuration, validated once, passed explicitly."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from mnistlab.datasets import all_datasets
from mnistlab.errors import ConfigError
from mnistlab.models import list_models

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "mlp"
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.5
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    early_stop: int | None = None  # patience in epochs without a better validation loss
    data_dir: str | None = None
    subset: int | None = None  # keep the first N samples of each split (quick runs, tests)
    max_steps: int | None = None  # cap on optimizer steps per epoch (quick runs)
    log_every: int = 100  # record the train loss every N steps, as the notebook does
    deterministic: bool = False

    def __post_init__(self) -> None:
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


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then MPS, then the CPU; an explicit device must exist."""
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this torch build sees no CUDA GPU "
                          f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    if name == "mps" and not has_mps:
        raise ConfigError("--device mps: MPS is not available on this machine; use --device cpu")
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    return torch.device(name)

"""The notebook's two models, in a registry, and your own: `create_model(spec)`, `list_models()`.

A spec is a registry name, `package.module:factory` or `path/to/file.py:Name` (see modelspec.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mnistlab.data.datasets import DATASETS, DataShape
from mnistlab.training import modelspec
from mnistlab.training.modelspec import ModelCode

__all__ = [
    "MLP",
    "CNN",
    "ModelCode",
    "check_model_spec",
    "count_parameters",
    "create_model",
    "list_models",
    "model_code",
    "model_code_for_run",
    "register_model",
    "spec_name",
]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
DEFAULT_SHAPE = DATASETS["mnist"].shape  # what a model is built for when no dataset is named


def register_model(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return deco


def list_models() -> list[str]:
    return list(_REGISTRY)


def check_model_spec(spec: str) -> None:
    """A registry name or a well-formed spec; nothing is read or imported (a ConfigError if not)."""
    modelspec.parse_spec(spec, list_models())


def model_code(spec: str | ModelCode) -> ModelCode:
    """The spec's code, read (a file's bytes) but not yet run."""
    return spec if isinstance(spec, ModelCode) else modelspec.resolve(spec, list_models())


def model_code_for_run(
    run_path: Path, spec: str, *, check_original: bool = False, fallback_to_spec: bool = False
) -> ModelCode:
    """The code a run was trained with (a file spec: the run's copy, after its SHA-256 is checked)."""
    return modelspec.resolve_for_run(
        Path(run_path), spec, list_models(), check_original=check_original, fallback_to_spec=fallback_to_spec
    )


def as_shape(shape: DataShape | None) -> DataShape:
    """The data's shape; None: MNIST's (a model built with no dataset named)."""
    return DEFAULT_SHAPE if shape is None else shape


def create_model(spec: str | ModelCode, shape: DataShape | None = None) -> nn.Module:
    """A fresh model for data of `shape` (default: MNIST's), checked: an nn.Module with parameters that
    maps (B, *shape.sample) to (B, shape.classes). Every failure is a ConfigError of one line."""
    shape = as_shape(shape)
    code = model_code(spec)
    model = modelspec.call_factory(modelspec.factory_of(code, _REGISTRY), code, shape)
    modelspec.check_model(model, code, shape)
    return model


def spec_name(spec: str | ModelCode) -> str:
    return spec.spec if isinstance(spec, ModelCode) else spec


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class MLP(nn.Module):
    """784-128-64-10 with ReLU on MNIST: 109,386 parameters. Input and output follow the data's shape."""

    def __init__(
        self, num_classes: int = DEFAULT_SHAPE.classes, sample_shape: tuple[int, ...] = DEFAULT_SHAPE.sample
    ) -> None:
        super().__init__()
        self.inputs = math.prod(sample_shape)
        self.fc1 = nn.Linear(self.inputs, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, self.inputs)  # (B, 1, 28, 28) -> (B, 784)
        x = torch.relu(self.fc1(x))  # (B, 128)
        x = torch.relu(self.fc2(x))  # (B, 64)
        return self.fc3(x)  # (B, classes) logits


class GlobalMaxPool(nn.Module):
    """Max over H and W, (B, C, H, W) -> (B, C, 1, 1): AdaptiveMaxPool2d(1) without its CUDA backward,
    which has no deterministic kernel (--deterministic refuses it). No parameters, so checkpoints
    written with the adaptive pool load unchanged. `max` over the flattened plane, not `amax`: where
    the maximum is tied (ReLU zeros, blank background), its backward gives the gradient to the first
    maximum, as the adaptive pool does, where amax would share it; so training stays bit-identical."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).max(dim=2).values[..., None, None]


class CNN(nn.Module):
    """Three 3x3 convs (32, 64, 128; strides 1, 2, 2), global max-pool, 128-64-10 head: 101,578 parameters."""

    def __init__(
        self, num_classes: int = DEFAULT_SHAPE.classes, sample_shape: tuple[int, ...] = DEFAULT_SHAPE.sample
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(sample_shape[0], 32, kernel_size=3, stride=1, padding=1),  # (B, 32, 28, 28)
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1),  # (B, 64, 14, 14)
            nn.ReLU(),
            nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=1),  # (B, 128, 7, 7)
            nn.ReLU(),
            GlobalMaxPool(),  # (B, 128, 1, 1)
        )
        self.head = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(x)
        x = x.view(x.size(0), -1)  # (B, 128)
        return self.head(x)  # (B, classes) logits


class SpeedNet(nn.Module):
    """The speedrun's net (measure/speedrun.py; docs/speedrun.md says what each choice bought).

    On a 2-core CPU a small CNN's step goes to memory traffic over its largest activations (batch
    norm, ReLU, pooling and their backward passes) and to convolutions too small for the hardware,
    not to arithmetic at its peak. So the net keeps those small:
    - the outer 2 pixels are cropped (MNIST's digits sit in a centred 20x20 box: 0.23% of its ink lies
      outside the central 24x24; Fashion-MNIST's images fill the frame and lose 8.3% of theirs);
    - pixel unshuffle turns each 2x2 patch into 4 channels, so the first conv works at 12x12;
    - the first conv has 16 channels, and pools before its batch norm and ReLU (a quarter of the
      values to normalise);
    - the second conv has 32 channels (issue 32: at 64 its backward was the step's largest operation;
      32 cost 0.10 points of validation accuracy, of which the recipe's Adam beta2 of 0.95 wins 0.07 back);
    - the flatten keeps the channels-last order, so that no layout conversion runs in either direction.
    Then conv 3x3 -> 32 + batch norm, dense 288 -> 256 + batch norm, dense 256 -> classes.
    82,090 parameters, 0.35 MFLOP forward and 0.94 MFLOP per trained image (`mnistlab profile speednet`)."""

    def __init__(
        self, num_classes: int = DEFAULT_SHAPE.classes, sample_shape: tuple[int, ...] = DEFAULT_SHAPE.sample
    ) -> None:
        super().__init__()
        channels, height, width = sample_shape
        if height % 2 or width % 2 or min(height, width) < 16:  # else torch's error names the cropped size
            raise ValueError(
                f"speednet takes images whose height and width are even and at least 16 (pixel "
                f"unshuffle halves them, then two 3x3 convs and a 2x2 pool); these are {height}x{width}"
            )
        self.crop = 2 if min(height, width) >= 24 else 0  # smaller images keep their border
        side_h, side_w = (((n - 2 * self.crop) // 2 - 2) // 2 - 2 for n in (height, width))
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(2),  # (B, 4, 12, 12)
            nn.Conv2d(4 * channels, 16, kernel_size=3, bias=False),  # (B, 16, 10, 10)
            nn.MaxPool2d(2),
            nn.BatchNorm2d(16),
            nn.ReLU(),  # (B, 16, 5, 5)
            nn.Conv2d(16, 32, kernel_size=3, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),  # (B, 32, 3, 3)
        )
        self.dense = nn.Sequential(nn.Linear(32 * side_h * side_w, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU())
        self.head = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.crop:
            c = self.crop
            x = x[:, :, c:-c, c:-c]
        x = self.stem(x)
        x = x.permute(0, 2, 3, 1).flatten(1)  # (B, 288) in (h, w, c) order: a view of channels-last maps
        return self.head(self.dense(x))  # (B, classes) logits


register_model("mlp")(MLP)
register_model("cnn")(CNN)
register_model("speednet")(SpeedNet)

"""A model tour, as the notebook's MyModule cell: tree, state_dict shapes, counts, output shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mnistlab.core.errors import ModelError
from mnistlab.core.failures import blame_model
from mnistlab.data.datasets import DataShape
from mnistlab.training.models import ModelCode, as_shape, count_parameters, create_model, spec_name


@dataclass(frozen=True)
class ModelSummary:
    name: str
    tree: str
    parameters: list[tuple[str, tuple[int, ...], int]]  # (state_dict key, shape, numel)
    total: int
    trainable: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """summary --json: every field, each parameter as {key, shape, count}."""
        return {
            "name": self.name,
            "tree": self.tree,
            "total": self.total,
            "trainable": self.trainable,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "parameters": [{"key": k, "shape": list(shape), "count": n} for k, shape, n in self.parameters],
        }

    def format(self) -> str:
        shapes = [str(list(s)) for _, s, _ in self.parameters]
        width = max(len("key"), *(len(n) for n, _, _ in self.parameters))
        sw = max(len("shape"), *(len(s) for s in shapes))
        cw = max(len("parameters"), *(len(f"{c:,}") for _, _, c in self.parameters))
        lines = [
            f"== {self.name} ==",
            self.tree,
            "",
            "state_dict:",
            f"  {'key':<{width}}  {'shape':<{sw}}  {'parameters':>{cw}}",
        ]
        lines += [
            f"  {n:<{width}}  {sh:<{sw}}  {c:>{cw},}" for (n, _, c), sh in zip(self.parameters, shapes, strict=True)
        ]
        lines += [
            f"parameters: {self.total:,} ({self.trainable:,} trainable)",
            f"output shape for input {list(self.input_shape)}: {list(self.output_shape)}",
        ]
        return "\n".join(lines)


def summarize(name: str | ModelCode, batch_size: int = 1, shape: DataShape | None = None) -> ModelSummary:
    """`name`: a registry name or a spec (see training/modelspec.py); `shape`: the data's (default MNIST's)."""
    shape = as_shape(shape)
    model = create_model(name, shape)
    batch = (batch_size, *shape.sample)
    # checked at a batch of 2 when built, a model of one's own may still fail at this one: one line, like train's
    with blame_model(spec_name(name), f"on a {batch} batch"), torch.no_grad():
        out = model(torch.zeros(batch))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch_size, shape.classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"model {spec_name(name)}: its output on a {batch} batch is {got}, expected "
            f"{(batch_size, shape.classes)} (one logit per class)"
        )
    params = [(k, tuple(v.shape), v.numel()) for k, v in model.state_dict().items()]
    return ModelSummary(
        spec_name(name),
        str(model),
        params,
        count_parameters(model),
        count_parameters(model, True),
        (batch_size, *shape.sample),
        tuple(out.shape),
    )

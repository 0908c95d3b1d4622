"""Counting parameters, MACs and FLOPs, forward and for a whole training step.

Counts come from torch.utils.flop_counter.FlopCounterMode, which sees every matmul and
convolution that runs, backward included. It counts 2 FLOPs per multiply-accumulate and
ignores bias adds, activations, pooling and the loss (a rounding error for these models).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mnistlab.core.errors import ConfigError, first_line
from mnistlab.core.richdisplay import html_table
from mnistlab.data.datasets import DataShape
from mnistlab.training.models import ModelCode, as_shape, count_parameters, create_model, spec_name

MACS_VS_FLOPS = (
    "A MAC (multiply-accumulate) is 2 FLOPs (a multiply and an add); thop, fvcore and ptflops "
    "report MACs under the name 'FLOPs', so their number is half the FLOP count."
)


@dataclass(frozen=True)
class LayerProfile:
    name: str
    type: str
    output_shape: list[int]
    parameters: int
    macs: int
    flops: int  # forward
    train_flops: int  # forward + backward, attributed to this layer


@dataclass(frozen=True)
class ModelProfile:
    model: str
    batch_size: int
    parameters: int
    trainable_parameters: int
    macs: int
    forward_flops: int
    backward_flops: int
    train_step_flops: int  # forward + backward (SGD's elementwise update is not counted)
    layers: list[LayerProfile]

    @property
    def thop_number(self) -> int:
        """What thop.profile prints as 'FLOPs' for these layers: MACs of convs and linears."""
        return self.macs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "thop_number": self.thop_number}

    def _repr_html_(self) -> str:
        totals = html_table(
            f"{self.model} (batch size {self.batch_size})",
            [
                ("parameters", f"{self.parameters:,} ({self.trainable_parameters:,} trainable)"),
                ("MACs (forward)", f"{self.macs:,} (what thop prints as 'FLOPs')"),
                ("FLOPs (forward)", f"{self.forward_flops:,}"),
                ("FLOPs (backward)", f"{self.backward_flops:,}"),
                ("FLOPs (training step)", f"{self.train_step_flops:,}"),
            ],
        )
        layers = html_table(
            "per layer",
            [
                (
                    lp.name,
                    lp.type,
                    lp.output_shape,
                    f"{lp.parameters:,}",
                    f"{lp.macs:,}",
                    f"{lp.flops:,}",
                    f"{lp.train_flops:,}",
                )
                for lp in self.layers
            ],
            headers=("layer", "type", "output shape", "params", "MACs", "FLOPs", "train FLOPs"),
        )
        return totals + layers


def _module_key(model: nn.Module, path: str) -> str:
    return type(model).__name__ + (f".{path}" if path else "")


def profile_model(name: str | ModelCode, batch_size: int = 1, shape: DataShape | None = None) -> ModelProfile:
    """`name`: a registry name or a spec (see training/modelspec.py); `shape`: the data's (default MNIST's)."""
    shape = as_shape(shape)
    torch.manual_seed(0)
    model = create_model(name, shape)
    # counted in eval mode: the counted ops (matmuls, convolutions) are the same in both modes, and batch
    # norm in training mode refuses batch 1 (one value per channel), the notebook's count
    model.eval()
    x = torch.randn(batch_size, *shape.sample)
    y = torch.zeros(batch_size, dtype=torch.long)
    leaves = [(p, m) for p, m in model.named_modules() if p and not list(m.children())]
    shapes: dict[str, list[int]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, p=p: shapes.__setitem__(p, list(out.shape))) for p, m in leaves
    ]
    try:  # a model of one's own may fail at a batch size its construction check did not try
        with FlopCounterMode(display=False) as fwd:
            model(x)
        for h in hooks:
            h.remove()
        with FlopCounterMode(display=False) as step:
            F.cross_entropy(model(x), y).backward()
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the user's code: any failure (sys.exit too) is one line
        raise ConfigError(
            f"model {spec_name(name)}: counting its FLOPs on a {(batch_size, *shape.sample)} batch "
            f"failed ({first_line(e)})"
        ) from None
    fwd_counts, step_counts = fwd.get_flop_counts(), step.get_flop_counts()

    def total(counts: dict, p: str) -> int:
        return int(sum(counts.get(_module_key(model, p), {}).values()))

    layers = [
        LayerProfile(
            name=p,
            type=type(m).__name__,
            output_shape=shapes.get(p, []),
            parameters=sum(t.numel() for t in m.parameters(recurse=False)),
            macs=total(fwd_counts, p) // 2,
            flops=total(fwd_counts, p),
            train_flops=total(step_counts, p),
        )
        for p, m in leaves
    ]
    forward_flops, step_flops = int(fwd.get_total_flops()), int(step.get_total_flops())
    return ModelProfile(
        model=spec_name(name),
        batch_size=batch_size,
        parameters=count_parameters(model),
        trainable_parameters=count_parameters(model, trainable_only=True),
        macs=forward_flops // 2,
        forward_flops=forward_flops,
        backward_flops=step_flops - forward_flops,
        train_step_flops=step_flops,
        layers=layers,
    )


def format_profile(p: ModelProfile) -> str:
    head = (
        f"{'layer':<10} {'type':<18} {'output shape':<18} {'params':>9} {'MACs':>13} {'FLOPs':>14} {'train FLOPs':>14}"
    )
    rows = [
        f"{lp.name:<10} {lp.type:<18} {str(lp.output_shape):<18} {lp.parameters:>9,} {lp.macs:>13,} "
        f"{lp.flops:>14,} {lp.train_flops:>14,}"
        for lp in p.layers
    ]
    ratio = p.train_step_flops / p.forward_flops if p.forward_flops else float("nan")
    return "\n".join(
        [
            f"== {p.model} (batch size {p.batch_size}) ==",
            f"parameters:            {p.parameters:,} ({p.trainable_parameters:,} trainable)",
            f"MACs (forward):        {p.macs:,}   <- the number thop prints as 'FLOPs'",
            f"FLOPs (forward):       {p.forward_flops:,}",
            f"FLOPs (backward):      {p.backward_flops:,}",
            f"FLOPs (training step): {p.train_step_flops:,}   ({ratio:.2f}x forward, counted, not assumed to be 3x)",
            head,
            "-" * len(head),
            *rows,
        ]
    )

"""Issue 32: speednet's step without autocast, its weights kept in bf16 and fp32 master weights in Adam.

The recipe's step (batch 256, bf16-mixed autocast + channels-last, fused Adam, freed memory kept, the images
in bf16 as the speedrun keeps them) against the same step with the conv and dense layers' parameters held
in bf16 and no autocast: the forward pass computes in bf16 as autocast's does (batch norm takes bf16 input
with its fp32 parameters and statistics, as under autocast; the loss is taken on the logits cast to fp32, as
autocast does for cross-entropy); after backward, the bf16 gradients are copied into the fp32 masters' in
one foreach op, fused Adam updates the fp32 masters, and one `torch._foreach_copy_` writes them back to the
bf16 parameters. What it removes: autocast's per-op dispatch and its casts of every weight to bf16, forward
and backward, each step.

Variants (`--variants`, 0-based):
  0 the recipe's step (autocast), 1 bf16 weights + channels-last, 2 bf16 weights in NCHW,
  3 bf16 weights + channels-last with batch norm in bf16 too (its parameters with fp32 masters, its
  statistics in bf16), 4 bf16 weights + channels-last, fed fp32 images (cast to bf16 inside the step).

Timed in interleaved repeats (the order rotated each repeat), `--steps` steps per repeat after one untimed
step; printed: ms per step, median (range), and the ratio to the first variant chosen (the recipe's step by
default), medians and repeat by repeat (> 1: faster). `--clock cpu`: 1 thread, the thread's CPU time (for a
shared machine). `--casts K`: then torch.profiler over `--steps` steps of variant K (1 thread): the CPU time
per step of the weight casts and conversions (`to` inside conv2d, linear and convolution_backward, and the
ToCopyBackward0 nodes) and of the foreach copies that replace them (variant 1), beside the step's whole CPU
time; and the step's largest copies and fills, by the operation they serve.

    python benchmarks/speedrun_bf16_weights.py [--repeats 21] [--steps 20] [--clock wall|cpu] [--variants 0,1]
                                               [--casts K]

Measured 2026-12-07 and not adopted (docs/speedrun.md, "bf16 weights with fp32 masters instead of autocast"):
1.01-1.05x of the recipe's step in the paired medians (wall, 2 threads), 0.97-1.06x in CPU time (1 thread).
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from speedrun_ladder import cpu_words, spread  # noqa: E402

from mnistlab.data.datasets import data_root, get_dataset  # noqa: E402
from mnistlab.data.loader import read_split  # noqa: E402
from mnistlab.training.levers import Levers, keep_freed_memory, make_step, prepare_model  # noqa: E402
from mnistlab.training.models import create_model  # noqa: E402
from mnistlab.training.recipe import Recipe, load_to_device, recipe_optimizer  # noqa: E402


class MasterStep:
    """bf16 parameters in the model, fp32 masters in Adam; no autocast."""

    def __init__(self, model: nn.Module, recipe: Recipe, loss_fn, channels_last: bool, bn_bf16: bool) -> None:
        low = (nn.Conv2d, nn.Linear, *((nn.BatchNorm1d, nn.BatchNorm2d) if bn_bf16 else ()))
        for m in model.modules():
            if isinstance(m, low):
                m.to(torch.bfloat16)
        self.model, self.loss_fn, self.channels_last = model, loss_fn, channels_last
        params = list(model.parameters())
        self.masters = [p.detach().float() if p.dtype == torch.bfloat16 else p for p in params]
        self.low = [p for p in params if p.dtype == torch.bfloat16]
        self.high = [m for m, p in zip(self.masters, params, strict=True) if m is not p]
        for m in self.high:
            m.grad = torch.zeros_like(m)
        self.optimizer = torch.optim.Adam(self.masters, lr=recipe.max_lr, betas=(0.9, recipe.adam_beta2), fused=True)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.model.zero_grad(set_to_none=True)
        if x.dtype != torch.bfloat16:
            x = x.to(torch.bfloat16)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = self.loss_fn(self.model(x).float(), y)
        loss.backward()
        torch._foreach_copy_([m.grad for m in self.high], [p.grad for p in self.low])
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_copy_(self.low, self.high)
        return loss.detach()


VARIANTS = (  # name, (channels_last, bn_bf16, fp32 input); None: the recipe's step
    ("the recipe's step (bf16 autocast + channels-last)", None),
    ("bf16 weights + channels-last", (True, False, False)),
    ("bf16 weights, NCHW", (False, False, False)),
    ("bf16 weights + channels-last, batch norm bf16", (True, True, False)),
    ("bf16 weights + channels-last, fp32 images", (True, False, True)),
)


def build(kind: tuple[bool, bool, bool] | None, recipe: Recipe, cpu: torch.device, sample: tuple[int, ...]) -> Callable:
    torch.manual_seed(0)
    loss_fn = functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing)
    if kind is None:
        levers = Levers(precision="bf16-mixed", channels_last=True)
        model = prepare_model(create_model(recipe.model), levers, cpu, sample_shape=sample)
        opt = recipe_optimizer(model, recipe, levers, cpu)
        return make_step(model, opt, levers, cpu, batch_size=recipe.batch_size, sample_shape=sample, loss_fn=loss_fn)
    channels_last, bn_bf16, _ = kind
    model = prepare_model(create_model(recipe.model), Levers(channels_last=channels_last), cpu, sample_shape=sample)
    return MasterStep(model, recipe, loss_fn, channels_last, bn_bf16)


WRAPPERS = ("aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous", "aten::zero_", "aten::zeros_like")


def casts(which: int, recipe: Recipe, cpu: torch.device, x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    """Where the idea's saving can come from: a variant's weight casts and copies per step (one profile per
    process: a second one, of either step, was seen to fault ~250 pages in every step, which the timing never does)."""
    torch.set_num_threads(1)
    print(f"torch.profiler, {steps} steps, 1 thread; CPU time per step (the profiler's own cost included):")
    name, kind = VARIANTS[which]
    step = build(kind, recipe, cpu, tuple(x.shape[1:]))
    for _ in range(5):
        step(x, y)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    with torch.profiler.profile() as prof:
        for _ in range(steps):
            step(x, y)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    whole = cast = copy = 0.0
    moved: dict[str, float] = {}  # the copies' and fills' own time, by the operation they serve
    for e in prof.events():
        if e.name in ("aten::copy_", "aten::fill_"):
            q = e.cpu_parent
            while q is not None and q.name in WRAPPERS:
                q = q.cpu_parent
            where = f"{e.name[6:-1]} in {q.name if q is not None else 'the step'}"
            moved[where] = moved.get(where, 0.0) + e.self_cpu_time_total
        parent = e.cpu_parent.name if e.cpu_parent is not None else ""
        whole += e.cpu_time_total if e.cpu_parent is None else 0.0
        if e.name == "aten::to" and parent in ("aten::conv2d", "aten::linear", "aten::convolution_backward"):
            cast += e.cpu_time_total
        elif e.name.startswith("autograd::engine::evaluate_function: ToCopyBackward0"):
            cast += e.cpu_time_total
        elif e.name == "aten::_foreach_copy_":
            copy += e.cpu_time_total
    print(
        f"  {name:<52} step {whole / steps:7.0f} us; weight casts and conversions {cast / steps:5.0f} us "
        f"({cast / whole:.1%}); foreach copies {copy / steps:4.0f} us ({copy / whole:.1%}); "
        f"{faults / steps:.0f} page faults per step"
    )
    print(f"    copies and fills, {sum(moved.values()) / whole:.1%} of the step; the largest, by what they serve:")
    for where, us in sorted(moved.items(), key=lambda kv: -kv[1])[:6]:
        print(f"      {where:<70} {us / steps:5.0f} us ({us / whole:.1%})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--variants", default="", help="comma-separated numbers (0-based) of VARIANTS; default: all")
    p.add_argument("--casts", type=int, metavar="K", help="then profile variant K's casts and copies (1 thread)")
    args = p.parse_args(argv)
    try:
        chosen = [VARIANTS[int(i)] for i in args.variants.split(",")] if args.variants else list(VARIANTS)
    except (ValueError, IndexError):
        p.error(f"--variants: comma-separated numbers from 0 to {len(VARIANTS) - 1}")
    if args.casts is not None and not 0 <= args.casts < len(VARIANTS):
        p.error(f"--casts: a variant's number, from 0 to {len(VARIANTS) - 1}")
    if args.repeats < 1 or args.steps < 1:
        p.error("--repeats and --steps must be at least 1")
    if args.clock == "cpu":
        torch.set_num_threads(1)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    cpu, recipe, spec = torch.device("cpu"), Recipe(), get_dataset("mnist")
    keep_freed_memory()
    print(f"machine: {cpu_words()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {time.strftime('%F %T')}; "
        f"clock: {'thread CPU time, 1 thread' if args.clock == 'cpu' else 'wall'}"
    )
    train, test = read_split(spec, data_root(None), True), read_split(spec, data_root(None), False)
    tr, _, _ = load_to_device(train, test, spec, recipe.batch_size, cpu, dtype=torch.bfloat16)
    x, y = tr.x[: recipe.batch_size].clone(), tr.y[: recipe.batch_size].clone()
    sample = tuple(tr.x.shape[1:])
    steps, inputs = [], []
    for _, kind in chosen:
        steps.append(build(kind, recipe, cpu, sample))
        inputs.append(x.float() if kind is not None and kind[2] else x)
        for _ in range(3):
            steps[-1](inputs[-1], y)
    ms: list[list[float]] = [[] for _ in chosen]
    faults: list[list[float]] = [[] for _ in chosen]
    order = list(range(len(chosen)))
    for r in range(args.repeats):
        for i in order[r % len(order) :] + order[: r % len(order)]:
            steps[i](inputs[i], y)  # untimed
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, clock()
            for _ in range(args.steps):
                steps[i](inputs[i], y)
            ms[i].append((clock() - t0) / args.steps * 1e3)
            faults[i].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / args.steps)
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {time.strftime('%F %T')}")
    print(f"ms per step over {args.repeats} interleaved repeats of {args.steps} steps (batch {recipe.batch_size})")
    print(f"{'variant':<52} {'ms/step (range)':>20} {'vs the first':>12} {'paired (range)':>18} {'faults/step':>11}")
    ref = ms[0]
    for (name, _), v, f in zip(chosen, ms, faults, strict=True):
        paired = [a / b for a, b in zip(ref, v, strict=True)]
        print(
            f"{name:<52} {spread(v):>20} {statistics.median(ref) / statistics.median(v):>11.2f}x "
            f"{spread(paired) + 'x':>18} {statistics.median(f):>11.0f}"
        )
    if args.casts is not None:
        casts(args.casts, recipe, cpu, x, y, args.steps)
        print(f"load average after the profile: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

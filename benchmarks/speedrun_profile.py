"""Where the speedrun's step goes: torch.profiler over the recipe's own training step, grouped by operation.

Builds the step exactly as `measure.speedrun.run_seed` does (the recipe's model, levers, Adam, loss, inputs
in the loader's dtype), warms it up, then profiles `--steps` steps and prints each operation's share of the
CPU time with its calls per step, and the step's wall time with and without the profiler (which adds its
own cost per operation, so the shares are the figure to read, not the absolute times).

    python benchmarks/speedrun_profile.py [--steps 30] [--rows 20]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mnistlab.core.device import device_name, resolve_device
from mnistlab.data.datasets import get_dataset
from mnistlab.training.recipe import Recipe, default_levers, recipe_optimizer
from mnistlab.training.levers import make_step, prepare_model
from mnistlab.training.models import create_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=20)
    args = p.parse_args(argv)
    device, recipe, shape = resolve_device("cpu"), Recipe(), get_dataset("mnist").shape
    levers = default_levers(device)
    dtype = levers.autocast_dtype or torch.float32
    torch.manual_seed(0)
    model = prepare_model(create_model(recipe.model, shape), levers, device, sample_shape=shape.sample)
    step = make_step(model, recipe_optimizer(model, recipe, levers, device), levers, device,
                     batch_size=recipe.batch_size, sample_shape=shape.sample, input_dtype=dtype,
                     loss_fn=functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing))
    x = torch.randn(recipe.batch_size, *shape.sample).to(dtype)
    y = torch.randint(0, shape.classes, (recipe.batch_size,))
    for _ in range(10):
        step(x, y)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    plain = (time.perf_counter() - t0) / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(x, y)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    print(f"machine: {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{recipe.model}, batch {recipe.batch_size}, {levers.describe()}")
    print(f"step: {plain * 1e3:.2f} ms without the profiler, {total / 1e3 / args.steps:.2f} ms of operations' "
          f"self time with it")
    print(f"{'operation':<46} {'share':>6} {'ms/step':>8} {'calls/step':>10}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        print(f"{e.key[:46]:<46} {100 * e.self_cpu_time_total / total:>5.1f}% "
              f"{e.self_cpu_time_total / 1e3 / args.steps:>8.3f} {e.count / args.steps:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the speedrun's step goes: torch.profiler over the recipe's own training step, grouped by operation.

Builds the step exactly as `measure.speedrun.run_seed` does (the recipe's model, levers, Adam, loss, inputs
in the loader's dtype), warms it up, then profiles `--steps` steps and prints each operation's share of the
CPU time with its calls per step, and the step's wall time with and without the profiler (which adds its
own cost per operation, so the shares are the figure to read, not the absolute times). `--onednn` adds
oneDNN's own account (its verbose mode) of each convolution and matmul kernel of a step: the time it
took, and the GFLOP/s that is, which is where the arithmetic's distance to the ceiling shows.

    python benchmarks/speedrun_profile.py [--steps 30] [--rows 20] [--onednn] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from mnistlab.core.device import device_name, resolve_device
from mnistlab.data.datasets import get_dataset
from mnistlab.measure.ceilings import count_step
from mnistlab.training.levers import keep_freed_memory, make_step, prepare_model
from mnistlab.training.models import create_model
from mnistlab.training.recipe import Recipe, default_levers, recipe_optimizer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--onednn", action="store_true", help="also each oneDNN kernel's time and GFLOP/s")
    p.add_argument("--threads", type=int, default=None, help="torch's threads (default: torch's own, as run_seed)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, recipe, shape = resolve_device("cpu"), Recipe(), get_dataset("mnist").shape
    levers = default_levers(device)
    allocator = keep_freed_memory()  # as run_seed does
    dtype = levers.autocast_dtype or torch.float32
    torch.manual_seed(0)
    model = prepare_model(create_model(recipe.model, shape), levers, device, sample_shape=shape.sample)
    step = make_step(
        model,
        recipe_optimizer(model, recipe, levers, device),
        levers,
        device,
        batch_size=recipe.batch_size,
        sample_shape=shape.sample,
        input_dtype=dtype,
        loss_fn=functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing),
    )
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
    print(
        f"load average: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M')}; freed memory kept: "
        f"{'yes' if allocator is None else allocator}"
    )
    print(
        f"machine: {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{recipe.model}, batch {recipe.batch_size}, {levers.describe()}"
    )
    print(
        f"step: {plain * 1e3:.2f} ms without the profiler, {total / 1e3 / args.steps:.2f} ms of operations' "
        f"self time with it"
    )
    print(f"{'operation':<46} {'share':>6} {'ms/step':>8} {'calls/step':>10}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        print(
            f"{e.key[:46]:<46} {100 * e.self_cpu_time_total / total:>5.1f}% "
            f"{e.self_cpu_time_total / 1e3 / args.steps:>8.3f} {e.count / args.steps:>10.1f}"
        )
    groups: dict[str, float] = {}
    for e in events:
        groups[category(e.key)] = groups.get(category(e.key), 0.0) + e.self_cpu_time_total
    print(f"\n{'category':<46} {'share':>6} {'ms/step':>8}")
    for name, t in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{name:<46} {100 * t / total:>5.1f}% {t / 1e3 / args.steps:>8.3f}")
    flops = count_step(
        recipe.model, shape, recipe.batch_size, lambda m: recipe_optimizer(m, recipe, levers, device)
    ).flops
    print(
        f"\ncounted FLOPs per step: {flops / 1e6:.1f} MFLOP; at {plain * 1e3:.2f} ms per step (no profiler): "
        f"{flops / plain / 1e9:.1f} GFLOP/s"
    )
    if args.onednn:
        print_onednn(onednn_kernels(lambda: step(x, y), steps=10), 10)
    return 0


def onednn_kernels(run, steps: int) -> list[str]:
    """oneDNN's verbose lines ('exec' only) for `steps` calls of run(): it writes them to file descriptor 1."""
    import tempfile

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as f:
        os.dup2(f.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                for _ in range(steps):
                    run()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        f.seek(0)
        return [line for line in f.read().splitlines() if line.startswith("onednn_verbose") and ",exec," in line]


def kernel_flops(kind: str, desc: str) -> int:
    """A convolution's or matmul's FLOPs from oneDNN's problem descriptor (the same for its backward passes)."""
    if kind == "matmul":  # "MxK:KxN"
        (m, k), (_, n) = (tuple(int(v) for v in part.split("x")[-2:]) for part in desc.split(":"))
        return 2 * m * k * n
    if kind == "convolution":  # "mb256_ic16oc32_ih5oh3kh3sh1dh0ph0_iw5ow3kw3sw1dw0pw0"
        import re

        v = {key: int(val) for key, val in re.findall(r"([a-z]+?)(\d+)", desc.replace("_", ""))}
        return 2 * v["mb"] * v["ic"] * v["oc"] * v["oh"] * v["ow"] * v["kh"] * v["kw"]
    return 0


def print_onednn(lines: list[str], steps: int) -> None:
    rows: dict[tuple[str, str, str], list[float]] = {}
    for line in lines:
        f = line.split(",")
        kind, prop, desc, ms = f[5], f[7], f[-2], float(f[-1])
        rows.setdefault((kind, prop, desc), []).append(ms)
    print(f"\noneDNN's kernels, per step (its verbose mode, {steps} steps):")
    print(f"{'kernel':<24} {'pass':<18} {'problem':<52} {'ms/step':>8} {'GFLOP/s':>8}")
    for (kind, prop, desc), times in sorted(rows.items(), key=lambda kv: -sum(kv[1])):
        ms = sum(times) / steps
        flops = kernel_flops(kind, desc) * len(times) / steps
        rate = f"{flops / (ms / 1e3) / 1e9:8.1f}" if flops and ms else f"{'-':>8}"
        print(f"{kind:<24} {prop:<18} {desc[:52]:<52} {ms:>8.3f} {rate}")


CATEGORIES = (  # (words in the operation's name, category), first match wins
    (("convolution_backward",), "convolution backward (oneDNN)"),
    (("mkldnn_convolution", "aten::convolution", "_convolution"), "convolution forward (oneDNN)"),
    (("aten::mm", "aten::addmm", "aten::linear", "aten::matmul"), "matmul (dense layers, forward and backward)"),
    (("batch_norm",), "batch norm forward + backward"),
    (("max_pool",), "max-pool forward + backward"),
    (("threshold", "relu", "clamp_min"), "ReLU forward + backward"),
    (("adam", "Optimizer", "_foreach"), "Adam (Python step, fused kernel, zero_grad)"),
    (
        ("copy_", "_to_copy", "aten::to", "fill_", "zero_", "aten::zeros", "pixel_unshuffle", "contiguous"),
        "copies, casts, fills, pixel unshuffle",
    ),
    (("softmax", "nll_loss", "cross_entropy"), "loss (log-softmax, NLL with smoothing)"),
)


def category(key: str) -> str:
    other = "other (allocation, views, autograd)"
    return next((name for words, name in CATEGORIES if any(w in key for w in words)), other)


if __name__ == "__main__":
    sys.exit(main())

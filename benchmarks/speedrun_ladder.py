"""What each step of the speedrun recipe bought: the rungs from the anchor's recipe to mnistlab's, in one run.

Each rung is a (network, batch, levers) triple trained with the speedrun's protocol (Adam, one-cycle,
one epoch on the 60k training images, the whole 10k test set evaluated; `measure.speedrun.run_seed`).

- Time: every rung's training step is built once, warmed up, then timed in interleaved repeats
  (A B C ... A B C ...), so that a change in the machine's load hits every rung alike; the figure is
  the median step time x the steps of one epoch, plus the median time of one whole test-set pass.
  Ratios between rungs are what this script is for: absolute seconds move with the machine's load. Each
  rung's ratio to the reference (issue 20's recipe, when it is among the rungs) is given twice: the
  medians' ratio, and the median of the repeat-by-repeat ratios, with their range.
- Full runs: `--seeds N` speedrun runs per rung (default 2; 0 skips), seed by seed with the rungs in turn
  (seed 0 of every rung, then seed 1, ...): their timed seconds (run_seed's, the speedrun's own figure)
  and test accuracy.
- Every rung runs with freed memory kept in the process (`levers.keep_freed_memory`), as run_seed sets it.

    python benchmarks/speedrun_ladder.py [--seeds 2] [--repeats 7] [--steps 10] [--rungs 5,6] [--device cpu]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.core.device import device_name, resolve_device, synchronize
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.fetching import fetch
from mnistlab.data.loader import read_split
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import Levers, autocast, keep_freed_memory, make_step, prepare_model
from mnistlab.training.models import count_parameters, create_model
from mnistlab.training.recipe import Recipe, load_to_device, run_seed


class AnchorNet(nn.Module):
    """The anchor's network ("99% on MNIST in 0.76 s"): conv 5x5 24, pool, conv 3x3 32, pool, dense 800-256-10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 24, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(24, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(800, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpeedNetV1(nn.Module):
    """mnistlab's first speedrun net: conv 5x5 32 + BN, pool, conv 3x3 64 + BN, pool, dense 1600-10 (at 28x28)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 5, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(1600, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpeedNetV2(nn.Module):
    """The speedrun's net until issue 20: pixel unshuffle to 14x14, conv 3x3 32 + BN, pool, conv 3x3 64 + BN,
    dense 1024-128 + BN, dense 128-10 (152,394 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(4, 32, 3, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(1024, 128, bias=False),
            nn.BatchNorm1d(128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpeedNetV3(nn.Module):
    """The speedrun's net of issue 20: crop to 24x24, pixel unshuffle to 12x12, conv 3x3 16, pool, BN, ReLU,
    conv 3x3 64 + BN + ReLU, dense 576-256 + BN, dense 256-10 (160,490 parameters). speednet since issue 32
    is this net with 32 channels in the second conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(4, 16, 3, bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 64, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
        )
        self.dense = nn.Sequential(nn.Linear(576, 256, bias=False), nn.BatchNorm1d(256), nn.ReLU())
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x[:, :, 2:-2, 2:-2])
        return self.head(self.dense(x.permute(0, 2, 3, 1).flatten(1)))


# as model specs (file:Name, the way a user brings a model), so the registry is left as it was
ANCHOR, SPEEDNET_V1, SPEEDNET_V2, SPEEDNET_V3 = (
    f"{__file__}:{name}" for name in ("AnchorNet", "SpeedNetV1", "SpeedNetV2", "SpeedNetV3")
)
WHOLE = {"epoch_fraction": 1.0, "test_shift": 0}  # whole epochs, the plain evaluation: every recipe before issue 32
BEFORE = {"batch_size": 128, "max_lr": 0.01, "label_smoothing": 0.0, "adam_beta2": 0.999, **WHOLE}  # until issue 20
ISSUE20 = {"batch_size": 256, "max_lr": 0.03, "label_smoothing": 0.1, "adam_beta2": 0.999, **WHOLE}  # issue 20's

FP32, BF16_CL = Levers(), Levers(precision="bf16-mixed", channels_last=True)


@dataclass(frozen=True)
class Rung:
    what: str
    recipe: Recipe
    levers: Levers


ANCHOR_RECIPE = Recipe(model=ANCHOR, batch_size=256, max_lr=0.01, label_smoothing=0.0, adam_beta2=0.999, **WHOLE)
RUNGS = [
    Rung("anchor's recipe (net, batch 256), fp32 eager", ANCHOR_RECIPE, FP32),
    Rung("+ bf16-mixed + channels-last", ANCHOR_RECIPE, BF16_CL),
    Rung("first speednet: BN, no hidden dense, batch 128", Recipe(model=SPEEDNET_V1, **BEFORE), BF16_CL),
    Rung("2nd speednet: unshuffle to 14x14, dense 128 + BN", Recipe(model=SPEEDNET_V2, **BEFORE), BF16_CL),
    Rung("3rd speednet: crop 24x24, conv 16, pool first, dense 256", Recipe(model=SPEEDNET_V3, **BEFORE), BF16_CL),
    Rung("+ batch 256, max lr 0.03, label smoothing 0.1 (issue 20)", Recipe(model=SPEEDNET_V3, **ISSUE20), BF16_CL),
    Rung("speednet: conv2 32 ch, Adam beta2 0.95, max lr 0.04", Recipe(**WHOLE), BF16_CL),
    Rung("+ 80% of each epoch, unsure test images shifted (issue 32)", Recipe(), BF16_CL),
    Rung("speednet's recipe in fp32 eager (what levers buy)", Recipe(), FP32),
]
ISSUE20_RUNG = 5  # the reference of the ratios: the recipe before issue 32


def time_rungs(
    rungs: list[Rung], train, test: dict, device, repeats: int, steps: int, clock=time.perf_counter
) -> list[tuple[list[float], list[float]]]:
    """Per rung: (the per-repeat epoch estimates, the per-repeat test-pass times), repeats interleaved over
    the rungs; `test`: the test loader per input dtype; `clock`: wall time, or this thread's CPU time."""
    built = []
    for r in rungs:
        torch.manual_seed(0)
        model = prepare_model(create_model(r.recipe.model), r.levers, device, sample_shape=tuple(train.x.shape[1:]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda") or None)
        step = make_step(
            model,
            opt,
            r.levers,
            device,
            batch_size=r.recipe.batch_size,
            sample_shape=tuple(train.x.shape[1:]),
            loss_fn=functools.partial(F.cross_entropy, label_smoothing=r.recipe.label_smoothing),
        )
        # inputs in the dtype the speedrun keeps them in (measure.speedrun.load_to_device)
        x = train.x[: r.recipe.batch_size].to(r.levers.autocast_dtype or torch.float32)
        y = train.y[: r.recipe.batch_size].clone()
        for _ in range(3):
            step(x, y)
        built.append((r, model, step, x, y))
    epoch_s: list[list[float]] = [[] for _ in rungs]
    eval_s: list[list[float]] = [[] for _ in rungs]
    for _ in range(repeats):
        for i, (r, model, step, x, y) in enumerate(built):
            synchronize(device)
            t0 = clock()
            for _ in range(steps):
                step(x, y)
            synchronize(device)
            batches = r.recipe.batches_per_epoch(-(-train.x.shape[0] // r.recipe.batch_size))
            epoch_s[i].append((clock() - t0) / steps * batches)
            t0 = clock()
            with autocast(r.levers, device):  # the plain pass: an untrained net is unsure of every image, and would
                # take the shifted views for all of them, not for the 2% a trained one does (the full runs do)
                evaluate(model, test[r.levers.autocast_dtype or torch.float32], 10)
            eval_s[i].append(clock() - t0)
            model.train()
    return list(zip(epoch_s, eval_s, strict=True))


def cpu_words() -> str:
    """The CPU's model name and the flags that decide its bf16 speed (from /proc/cpuinfo, Linux)."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return "cpu: unknown (no /proc/cpuinfo)"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
    return f"cpu: {name}; flags: " + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seeds", type=int, default=2, help="full speedrun runs per rung, interleaved (0: none)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    p.add_argument("--rungs", default="", help="comma-separated rung numbers (0-based; default: all)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: this thread's CPU time, with 1 thread (sets it): on a shared machine, the time the "
        "step computed, not the time other processes held the core; the full runs stay wall time",
    )
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.clock == "cpu":
        if device.type != "cpu":
            p.error("--clock cpu times the CPU's own work: use it with --device cpu")
        torch.set_num_threads(1)
    chosen = [int(i) for i in args.rungs.split(",")] if args.rungs else list(range(len(RUNGS)))
    rungs = [RUNGS[i] for i in chosen]
    ref = rungs.index(RUNGS[ISSUE20_RUNG]) if RUNGS[ISSUE20_RUNG] in rungs else 0  # the ratios' denominator
    spec, root = get_dataset(args.dataset), data_root(None)
    fetch(spec, root, log=lambda m: print(m, file=sys.stderr))
    train_raw, test_raw = read_split(spec, root, train=True), read_split(spec, root, train=False)
    allocator = keep_freed_memory() if device.type == "cpu" else "not the CPU"  # as run_seed does, for every rung
    print(
        f"machine: {device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads; {cpu_words()}"
    )
    print(
        f"load average at the start: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M')}; "
        f"freed memory kept (levers.keep_freed_memory): {'yes' if allocator is None else allocator}"
    )
    tr, te, _ = load_to_device(train_raw, test_raw, spec, 256, device)
    te_bf16 = load_to_device(train_raw, test_raw, spec, 256, device, dtype=torch.bfloat16)[1]
    times = time_rungs(
        rungs,
        tr,
        {torch.float32: te, torch.bfloat16: te_bf16},
        device,
        args.repeats,
        args.steps,
        time.thread_time if args.clock == "cpu" else time.perf_counter,
    )
    totals = [[e + v for e, v in zip(ep, ev, strict=True)] for ep, ev in times]
    runs: list[list[tuple[float, float]]] = [[] for _ in rungs]  # (seconds, accuracy) per seed
    if args.seeds:  # seed by seed, every rung in turn: a change in load hits every rung alike
        loaders = [
            load_to_device(
                train_raw, test_raw, spec, r.recipe.batch_size, device, dtype=r.levers.autocast_dtype or torch.float32
            )[:2]
            for r in rungs
        ]
        for seed in range(args.seeds):
            for i, r in enumerate(rungs):
                res = run_seed(r.recipe, r.levers, seed, *loaders[i], spec.shape)
                runs[i].append((res.seconds, res.accuracy))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%H:%M')}")
    print(
        f"{'#':>2} {'rung':<60} {'params':>8} {'epoch s (range)':>17} {'test s':>6} {'total s':>6} "
        f"{'vs ' + ('issue 20' if rungs[ref] is RUNGS[ISSUE20_RUNG] else 'rung ' + str(chosen[ref])):>11} "
        f"{'paired (range)':>17}" + (f"  {'full runs s (range)':>19}  accuracy (seeds)" if args.seeds else "")
    )
    for k, (i, r) in enumerate(zip(chosen, rungs, strict=True)):
        ep, ev = times[k]
        paired = [a / b for a, b in zip(totals[ref], totals[k], strict=True)]  # > 1: faster than the reference
        line = (
            f"{i:>2} {r.what:<60} {count_parameters(create_model(r.recipe.model)):>8,} {spread(ep):>17} "
            f"{statistics.median(ev):>6.3f} {statistics.median(totals[k]):>6.2f} "
            f"{statistics.median(totals[ref]) / statistics.median(totals[k]):>10.2f}x {spread(paired) + 'x':>17}"
        )
        if args.seeds:
            secs, accs = [s for s, _ in runs[k]], [a for _, a in runs[k]]
            line += f"  {spread(secs):>19}  {statistics.fmean(accs):.2f}% ({', '.join(f'{a:.2f}' for a in accs)})"
        print(line, flush=True)
    print(f"clock: {'this thread' + chr(39) + 's CPU time, 1 thread' if args.clock == 'cpu' else 'wall time'}")
    print(
        "epoch s: median (range) over the interleaved repeats of the step time x the steps the recipe trains of one "
        "epoch of 60k; "
        "test s: one plain pass over the 10k test images (without the shifted views of unsure ones); "
        "total = epoch + test; vs: the reference's median total over "
        "this rung's; paired: the same ratio repeat by repeat (> 1: faster)"
        + (
            "; full runs: measure.speedrun.run_seed's timed seconds (train + test evaluation), seeds interleaved "
            "over the rungs; accuracy: test"
            if args.seeds
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

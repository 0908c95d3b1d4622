"""What each step of the speedrun recipe bought: the rungs from the anchor's recipe to mnistlab's, in one run.

Each rung is a (network, batch, levers) triple trained with the speedrun's protocol (Adam, one-cycle,
one epoch on the 60k training images, the whole 10k test set evaluated; `measure.speedrun.run_seed`).

- Time: every rung's training step is built once, warmed up, then timed in interleaved repeats
  (A B C ... A B C ...), so that a change in the machine's load hits every rung alike; the figure is
  the median step time x the steps of one epoch, plus the median time of one whole test-set pass.
  Ratios between rungs are what this script is for: absolute seconds move with the machine's load.
- Accuracy: `--seeds N` full speedrun runs per rung (default 2; 0 skips), test accuracy mean.

    python benchmarks/speedrun_ladder.py [--seeds 2] [--repeats 7] [--steps 10] [--device cpu] [--dataset mnist]
"""

from __future__ import annotations

import argparse
import functools
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
from mnistlab.training.recipe import Recipe, load_to_device, run_seed
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import Levers, autocast, make_step, prepare_model
from mnistlab.training.models import count_parameters, create_model


class AnchorNet(nn.Module):
    """The anchor's network ("99% on MNIST in 0.76 s"): conv 5x5 24, pool, conv 3x3 32, pool, dense 800-256-10."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 24, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(24, 32, 3), nn.ReLU(),
                                 nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpeedNetV1(nn.Module):
    """mnistlab's first speedrun net: conv 5x5 32 + BN, pool, conv 3x3 64 + BN, pool, dense 1600-10 (at 28x28)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 32, 5, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Flatten(), nn.Linear(1600, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SpeedNetV2(nn.Module):
    """The speedrun's net until issue 20: pixel unshuffle to 14x14, conv 3x3 32 + BN, pool, conv 3x3 64 + BN,
    dense 1024-128 + BN, dense 128-10 (152,394 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(4, 32, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(),
            nn.Linear(1024, 128, bias=False), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# as model specs (file:Name, the way a user brings a model), so the registry is left as it was
ANCHOR, SPEEDNET_V1, SPEEDNET_V2 = f"{__file__}:AnchorNet", f"{__file__}:SpeedNetV1", f"{__file__}:SpeedNetV2"
BEFORE = {"batch_size": 128, "max_lr": 0.01, "label_smoothing": 0.0}  # the recipe until issue 20

FP32, BF16_CL = Levers(), Levers(precision="bf16-mixed", channels_last=True)


@dataclass(frozen=True)
class Rung:
    what: str
    recipe: Recipe
    levers: Levers


RUNGS = [
    Rung("anchor's recipe (net, batch 256), fp32 eager", Recipe(model=ANCHOR, batch_size=256, max_lr=0.01,
                                                                label_smoothing=0.0), FP32),
    Rung("+ bf16-mixed + channels-last", Recipe(model=ANCHOR, batch_size=256, max_lr=0.01, label_smoothing=0.0),
         BF16_CL),
    Rung("first speednet: BN, no hidden dense, batch 128", Recipe(model=SPEEDNET_V1, **BEFORE), BF16_CL),
    Rung("2nd speednet: unshuffle to 14x14, dense 128 + BN", Recipe(model=SPEEDNET_V2, **BEFORE), BF16_CL),
    Rung("speednet: crop 24x24, conv 16, pool first, dense 256", Recipe(**BEFORE), BF16_CL),
    Rung("+ batch 256, max lr 0.03, label smoothing 0.1", Recipe(), BF16_CL),
    Rung("speednet's recipe in fp32 eager (what levers buy)", Recipe(), FP32),
]


def time_rungs(train, test: dict, device, repeats: int, steps: int) -> list[tuple[float, float, list[float]]]:
    """Per rung: (seconds per epoch, seconds per test pass, the per-repeat epoch estimates); `test`: the
    test loader per input dtype."""
    built = []
    for r in RUNGS:
        torch.manual_seed(0)
        model = prepare_model(create_model(r.recipe.model), r.levers, device, sample_shape=tuple(train.x.shape[1:]))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda") or None)
        step = make_step(model, opt, r.levers, device, batch_size=r.recipe.batch_size,
                         sample_shape=tuple(train.x.shape[1:]),
                         loss_fn=functools.partial(F.cross_entropy, label_smoothing=r.recipe.label_smoothing))
        # inputs in the dtype the speedrun keeps them in (measure.speedrun.load_to_device)
        x = train.x[: r.recipe.batch_size].to(r.levers.autocast_dtype or torch.float32)
        y = train.y[: r.recipe.batch_size].clone()
        for _ in range(3):
            step(x, y)
        built.append((r, model, step, x, y))
    epoch_s: list[list[float]] = [[] for _ in RUNGS]
    eval_s: list[list[float]] = [[] for _ in RUNGS]
    for _ in range(repeats):
        for i, (r, model, step, x, y) in enumerate(built):
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            synchronize(device)
            epoch_s[i].append((time.perf_counter() - t0) / steps * -(-train.x.shape[0] // r.recipe.batch_size))
            t0 = time.perf_counter()
            with autocast(r.levers, device):
                evaluate(model, test[r.levers.autocast_dtype or torch.float32], 10)
            eval_s[i].append(time.perf_counter() - t0)
            model.train()
    return [(statistics.median(e), statistics.median(v), e) for e, v in zip(epoch_s, eval_s, strict=True)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--seeds", type=int, default=2, help="full speedrun runs per rung for accuracy (0: none)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    spec, root = get_dataset(args.dataset), data_root(None)
    fetch(spec, root, log=lambda m: print(m, file=sys.stderr))
    train_raw, test_raw = read_split(spec, root, train=True), read_split(spec, root, train=False)
    print(f"machine: {device_name(device)}, torch {torch.__version__}")
    tr, te, _ = load_to_device(train_raw, test_raw, spec, 256, device)
    te_bf16 = load_to_device(train_raw, test_raw, spec, 256, device, dtype=torch.bfloat16)[1]
    times = time_rungs(tr, {torch.float32: te, torch.bfloat16: te_bf16}, device, args.repeats, args.steps)
    base = times[0][0] + times[0][1]
    print(f"{'rung':<56} {'params':>8} {'epoch s':>8} {'(range)':>13} {'test s':>7} {'total s':>8} {'vs anchor':>9}"
          f"{'  accuracy (seeds)' if args.seeds else ''}")
    for r, (ep, ev, spread) in zip(RUNGS, times, strict=True):
        line = (f"{r.what:<56} {count_parameters(create_model(r.recipe.model)):>8,} {ep:>8.2f} "
                f"{f'{min(spread):.2f}-{max(spread):.2f}':>13} {ev:>7.2f} {ep + ev:>8.2f} {base / (ep + ev):>8.2f}x")
        if args.seeds:
            trl, tel, _ = load_to_device(train_raw, test_raw, spec, r.recipe.batch_size, device,
                                         dtype=r.levers.autocast_dtype or torch.float32)
            accs = [run_seed(r.recipe, r.levers, s, trl, tel, spec.shape).accuracy for s in range(args.seeds)]
            line += f"  {statistics.fmean(accs):.2f}% ({', '.join(f'{a:.2f}' for a in accs)})"
        print(line, flush=True)
    print("epoch s: median step time (interleaved repeats) x steps in one epoch of 60k; test s: one pass over "
          "the 10k test images; total = epoch + test, the speedrun's timed part")
    return 0


if __name__ == "__main__":
    sys.exit(main())

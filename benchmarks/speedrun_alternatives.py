"""What was measured for issue 32 and not adopted: other ways to run speednet's step, side by side with it.

Each alternative is a rung (benchmarks/speedrun_ladder.py's Rung and time_rungs: the step built as the
speedrun builds it, warmed up, then timed in interleaved repeats), with speednet's own recipe; the first
is speednet as the speedrun runs it. Printed: the step's epoch estimate (median, range) and its ratio to
speednet's, medians and repeat by repeat. Then the evaluation at batch 1000 (the speedrun's) against one
batch of 10,000, interleaved. `--clock cpu` (1 thread, the thread's CPU time) for a shared machine.

    python benchmarks/speedrun_alternatives.py [--repeats 9] [--steps 10] [--clock wall|cpu] [--compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from speedrun_ladder import BF16_CL, Rung, cpu_words, spread, time_rungs  # noqa: E402

from mnistlab.core.device import device_name  # noqa: E402
from mnistlab.data.datasets import data_root, get_dataset  # noqa: E402
from mnistlab.data.loader import DeviceLoader, read_split  # noqa: E402
from mnistlab.training.evaluation import evaluate  # noqa: E402
from mnistlab.training.levers import Levers, autocast, keep_freed_memory  # noqa: E402
from mnistlab.training.models import create_model  # noqa: E402
from mnistlab.training.recipe import Recipe, load_to_device  # noqa: E402

CANDIDATES = str(Path(__file__).with_name("speedrun_candidates.py"))


def rungs(compiled: bool) -> list[Rung]:
    r = [
        Rung("speednet, eager bf16-mixed + channels-last (the recipe)", Recipe(), BF16_CL),
        Rung("speednet in NCHW (bf16-mixed, no channels-last)", Recipe(), Levers(precision="bf16-mixed")),
        Rung(
            "crop + unshuffle as one reshape copy to channels-last",
            Recipe(model=f"{CANDIDATES}:UnshuffleView"),
            BF16_CL,
        ),
        Rung(
            "crop + unshuffle + conv as one 6x6 conv of stride 2", Recipe(model=f"{CANDIDATES}:Conv6Stride2"), BF16_CL
        ),
        Rung("second conv and its batch norm in NCHW", Recipe(model=f"{CANDIDATES}:Conv2NCHW"), BF16_CL),
    ]
    if compiled:
        r.append(
            Rung(
                "speednet, torch.compile (Inductor, default mode)",
                Recipe(),
                Levers(precision="bf16-mixed", channels_last=True, compile="default"),
            )
        )
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--compile", action="store_true", help="also the compiled step (its compile: about 20-60 s)")
    args = p.parse_args(argv)
    if args.clock == "cpu":
        torch.set_num_threads(1)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    cpu, spec = torch.device("cpu"), get_dataset("mnist")
    keep_freed_memory()
    print(f"machine: {device_name(cpu)}, torch {torch.__version__}, {torch.get_num_threads()} threads; {cpu_words()}")
    print(
        f"load average at the start: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M')}; "
        f"clock: {'thread CPU time' if args.clock == 'cpu' else 'wall'}"
    )
    train, test = read_split(spec, data_root(None), True), read_split(spec, data_root(None), False)
    tr, te, _ = load_to_device(train, test, spec, 256, cpu, dtype=torch.bfloat16)
    chosen = rungs(args.compile)
    times = time_rungs(chosen, tr, {torch.bfloat16: te, torch.float32: te}, cpu, args.repeats, args.steps, clock)
    ref = [e + v for e, v in zip(*times[0], strict=True)]
    print(f"{'alternative':<58} {'epoch + test s (range)':>24} {'vs recipe':>9} {'paired (range)':>17}")
    for r, (ep, ev) in zip(chosen, times, strict=True):
        tot = [e + v for e, v in zip(ep, ev, strict=True)]
        paired = [a / b for a, b in zip(ref, tot, strict=True)]
        print(
            f"{r.what:<58} {spread(tot):>24} {statistics.median(ref) / statistics.median(tot):>8.2f}x "
            f"{spread(paired) + 'x':>17}"
        )
    # the evaluation's batch: the speedrun's 1000 against the whole test set in one call
    model = create_model("speednet").to(memory_format=torch.channels_last)
    one = DeviceLoader(test, spec.mean, spec.std, len(test), cpu, shuffle=False, dtype=torch.bfloat16)
    evals: dict[int, list[float]] = {1000: [], len(test): []}
    for _ in range(args.repeats):
        for loader in (te, one):
            t0 = clock()
            with autocast(BF16_CL, cpu):
                evaluate(model, loader, 10)
            evals[loader.batch_size].append(clock() - t0)
    for b, v in evals.items():
        print(f"evaluation of the 10k test images at batch {b:>5}: {spread(v)} s")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min); > 1 x: faster than the recipe's step")
    return 0


if __name__ == "__main__":
    sys.exit(main())

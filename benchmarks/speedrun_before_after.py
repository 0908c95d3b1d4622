"""Issue 32's speedrun against issue 20's, whole: recipe, net and allocator, in alternating fresh processes.

The allocator setting (levers.keep_freed_memory) is the process's and cannot be undone, so the two
cannot share a process as the ladder's rungs do. Each process reads the data, runs `--seeds` seeds of
one side with the speedrun's own run_seed (its timed seconds: training + test evaluation), and probes
the bfloat16 matmul ceiling once (measure_ceilings, 0.1 s per shape) so that every figure is set beside
the machine's speed at that moment; with `--threads 1` the process's CPU time over each run_seed (its
warm-up included) is the figure a busy machine leaves readable. The sides alternate (before, after,
before, after, ...) `--rounds` times; printed: every seed, then per side the median and range of the
seconds and of the ceiling, and the ratio of the medians.

- before: issue 20's recipe (SpeedNetV3 of the ladder, batch 256, max lr 0.03, label smoothing 0.1,
  beta2 0.999, whole epoch, plain evaluation) with glibc's default allocator;
- after: `Recipe()` (issue 32) with freed memory kept, as run_seed keeps it.

    python benchmarks/speedrun_before_after.py [--rounds 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import json, sys, torch
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.loader import read_split
from mnistlab.training import recipe as sr
from mnistlab.measure.ceilings import measure_ceilings
import time
side, seeds, ladder, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
if side == "before":  # glibc's default allocator, as before issue 32
    sr.keep_freed_memory = lambda: None
    recipe = sr.Recipe(model=ladder + ":SpeedNetV3", batch_size=256, max_lr=0.03, label_smoothing=0.1, adam_beta2=0.999,
                       epoch_fraction=1.0, test_shift=0)
else:
    recipe = sr.Recipe()
cpu = torch.device("cpu")
spec = get_dataset("mnist")
train, test = read_split(spec, data_root(None), True), read_split(spec, data_root(None), False)
levers = sr.default_levers(cpu)
tr, te, _ = sr.load_to_device(train, test, spec, recipe.batch_size, cpu, dtype=levers.autocast_dtype)
runs, cpu_s = [], []
for s in range(seeds):
    c0 = time.process_time()
    runs.append(sr.run_seed(recipe, levers, s, tr, te, spec.shape))
    cpu_s.append(time.process_time() - c0)  # the process's CPU time over the whole run_seed, its warm-up too

c = measure_ceilings(cpu, torch.bfloat16, seconds=0.1)
print(json.dumps({"seconds": [r.seconds for r in runs], "accuracy": [r.accuracy for r in runs], "cpu": cpu_s,
                  "ceiling": c.compute_flops_per_s, "threads": torch.get_num_threads()}))
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch's threads in each process (0: torch's own, 2 here)")
    args = p.parse_args(argv)
    ladder = str(Path(__file__).with_name("speedrun_ladder.py"))
    print(f"load average at the start: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M')}")
    got: dict[str, list[dict]] = {"before": [], "after": []}
    for r in range(args.rounds):
        for side in got:
            out = (
                subprocess.run(
                    [sys.executable, "-c", CHILD, side, str(args.seeds), ladder, str(args.threads)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            got[side].append(json.loads(out))
            g = got[side][-1]
            print(
                f"  round {r} {side:<6} ({g['threads']} threads): seeds "
                f"{', '.join(f'{s:.2f} s' for s in g['seconds'])} (CPU {', '.join(f'{c:.2f}' for c in g['cpu'])} "
                f"s); test accuracy "
                f"{', '.join(f'{a:.2f}' for a in g['accuracy'])}; bf16 ceiling {g['ceiling'] / 1e9:.0f} GFLOP/s; "
                f"load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%H:%M')}")
    med = {}
    for side, runs in got.items():
        secs = [s for g in runs for s in g["seconds"]]
        ceil = [g["ceiling"] / 1e9 for g in runs]
        med[side] = statistics.median(secs)
        cpus = [c for g in runs for c in g["cpu"]]
        print(
            f"{side:<6}: median {med[side]:.2f} s (range {min(secs):.2f}-{max(secs):.2f} s, {len(secs)} seeds); "
            f"CPU time of run_seed (warm-up included) median {statistics.median(cpus):.2f} s; "
            f"ceiling median {statistics.median(ceil):.0f} GFLOP/s (range {min(ceil):.0f}-{max(ceil):.0f})"
        )
    print(f"before / after: {med['before'] / med['after']:.2f}x (medians)")
    ratios = [
        statistics.median(b["seconds"]) / statistics.median(a["seconds"])
        for b, a in zip(got["before"], got["after"], strict=True)
    ]  # round by round
    print(
        f"before / after, round by round: median {statistics.median(ratios):.2f}x "
        f"(range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

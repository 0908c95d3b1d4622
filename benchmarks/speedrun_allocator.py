"""What keeping freed memory buys the speedrun's step (levers.keep_freed_memory; issue 32).

glibc's malloc is process-wide and cannot be set back once raised, so the comparison runs in fresh
processes, alternating (default, kept, default, kept, ...): each builds the recipe's step as run_seed
does, warms it up, then times `--steps` steps and counts the minor page faults they took. Printed: per
process, the step's wall time, the process's CPU time per step and the page faults per step; then the
medians and their ratio (kept / default).

    python benchmarks/speedrun_allocator.py [--pairs 5] [--steps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

CHILD = """
import functools, resource, sys, time, torch, torch.nn.functional as F
from mnistlab.training.recipe import Recipe, default_levers, recipe_optimizer
from mnistlab.training.levers import keep_freed_memory, make_step, prepare_model
from mnistlab.training.models import create_model
from mnistlab.data.datasets import get_dataset
kept, steps, threads = sys.argv[1] == "kept", int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
if kept:
    assert keep_freed_memory() is None
cpu, recipe, shape = torch.device("cpu"), Recipe(), get_dataset("mnist").shape
levers = default_levers(cpu)
torch.manual_seed(0)
model = prepare_model(create_model(recipe.model, shape), levers, cpu, sample_shape=shape.sample)
step = make_step(model, recipe_optimizer(model, recipe, levers, cpu), levers, cpu, batch_size=recipe.batch_size,
                 sample_shape=shape.sample, input_dtype=torch.bfloat16,
                 loss_fn=functools.partial(F.cross_entropy, label_smoothing=recipe.label_smoothing))
x, y = torch.randn(recipe.batch_size, *shape.sample).to(torch.bfloat16), torch.randint(0, 10, (recipe.batch_size,))
for _ in range(10):
    step(x, y)
f0, w0, c0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter(), time.process_time()
for _ in range(steps):
    step(x, y)
w, c = (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps
print(w, c, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / steps)
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    print(
        f"load average at the start: {os.getloadavg()[0]:.2f} (1 min), {time.strftime('%Y-%m-%d %H:%M')}; "
        f"{args.threads} thread(s), {args.steps} steps of speednet's recipe (batch 256, bf16-mixed + channels-last) "
        f"per process"
    )
    got: dict[str, list[tuple[float, float, float]]] = {"default": [], "kept": []}
    for _ in range(args.pairs):
        for mode in got:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, mode, str(args.steps), str(args.threads)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            got[mode].append(tuple(float(v) for v in out))
            w, c, f = got[mode][-1]
            print(
                f"  {mode:<8} wall {w * 1e3:6.2f} ms/step, CPU {c * 1e3:6.2f} ms/step, {f:6.0f} page faults/step",
                flush=True,
            )
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
    med = {m: [statistics.median(v[k] for v in got[m]) for k in range(3)] for m in got}
    for m in got:
        print(
            f"{m:<8} median: wall {med[m][0] * 1e3:.2f} ms/step, CPU {med[m][1] * 1e3:.2f} ms/step, "
            f"{med[m][2]:.0f} page faults/step"
        )
    wall, cpu = (med["kept"][k] / med["default"][k] for k in (0, 1))
    print(f"kept / default: wall {wall:.2f}x, CPU {cpu:.2f}x (medians)")
    for k, name in ((0, "wall"), (1, "CPU")):  # pair by pair: a change of load between pairs cancels
        ratios = [b[k] / a[k] for a, b in zip(got["default"], got["kept"], strict=True)]
        print(
            f"kept / default, pair by pair, {name}: median {statistics.median(ratios):.2f}x "
            f"(range {min(ratios):.2f}-{max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

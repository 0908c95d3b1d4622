"""What the decompositions add to the quick lab's bench (issue 27): the same bench with and without them, side by side.

    python benchmarks/decomposition_cost.py [--pairs 3] [--threads N] [--dataset mnist] [--models mlp cnn] [--steps 30]

Runs jobs/bench.bench_pipelines with the quick lab's arguments (jobs/lab.py: mlp and cnn, both pipelines, batch 64,
2 repeats of 30 steps after 10 warm-up steps, on the CPU) into temporary folders, alternately without and with
the decompositions (A B B A ...: a drift in the machine's load hits both alike), on one thread count for every run
(--threads, else chosen once at the start for the load then, as a command does), and prints each run's wall time,
its load average, and for a run with them the decompositions' own part (from their start to the job's end: the
same run's load on both sides of the split); then the ratio with/without of each pair: median (min-max), marked
unstable by the one rule (core/timing.Ratio). The figures are wall times, folder and files included: what a user
waits for.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from mnistlab.core import threads as thread_choice
from mnistlab.core.timing import Ratio
from mnistlab.jobs.bench import bench_pipelines
from mnistlab.measure.table import text_table


def one(decompose: bool, under: Path, dataset: str, models: list[str], steps: int) -> tuple[float, dict]:
    start = {"load_avg_1m": os.getloadavg()[0], "cpu_count": os.cpu_count()}
    marks: dict[str, float] = {}

    def log(message: str) -> None:
        if message.startswith("decomposing each model"):
            marks["decompositions"] = time.perf_counter()

    t = time.perf_counter()
    result, _, _ = bench_pipelines(
        models=models,
        devices=["cpu"],
        pipelines=["reference", "resident"],
        batch_size=64,
        steps=steps,
        repeats=2,
        warmup=10,
        dataset_name=dataset,
        out=under / f"{'with' if decompose else 'without'}-{time.monotonic_ns()}",
        decompose=decompose,
        log=log,
    )
    end = time.perf_counter()
    return end - t, {
        "start": start,
        "end": {"load_avg_1m": os.getloadavg()[0], "cpu_count": os.cpu_count()},
        "threads": result.ceilings["cpu"]["threads"],
        "decompositions_s": end - marks["decompositions"] if "decompositions" in marks else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3, choices=range(1, 11), metavar="1..10")
    p.add_argument("--threads", type=int, choices=range(1, 257), metavar="1..256")
    p.add_argument("--dataset", default="mnist")
    # the quick lab's; fewer only to check that the script runs (its test)
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    p.add_argument("--steps", type=int, default=30, choices=range(1, 1001), metavar="1..1000")
    args = p.parse_args(argv)
    chosen = thread_choice.apply(args.threads)  # once: every run on the same count
    print(f"threads: {chosen.threads} ({chosen.reason})", file=sys.stderr)
    order = [k % 4 in (1, 2) for k in range(2 * args.pairs)]  # without, with, with, without, ...
    runs: dict[bool, list[float]] = {False: [], True: []}
    rows, loads = [], []
    with tempfile.TemporaryDirectory(prefix="decomposition-cost-") as tmp:
        for decompose in order:
            seconds, info = one(decompose, Path(tmp), args.dataset, args.models, args.steps)
            runs[decompose].append(seconds)
            loads.append(info["start"]), loads.append(info["end"])
            part = info["decompositions_s"]
            rows.append(
                [
                    "with" if decompose else "without",
                    f"{seconds:.1f}",
                    f"{part:.1f} ({part / (seconds - part):.0%})" if part is not None else "-",
                    str(info["threads"]),
                    f"{info['start']['load_avg_1m']:.2f} -> {info['end']['load_avg_1m']:.2f}",
                ]
            )
            print(f"  {rows[-1][0]:7} {rows[-1][1]:>7} s", file=sys.stderr)
    print(
        text_table(
            ["decompositions", "bench s", "of which decompositions s (of the rest)", "threads", "load avg 1 min"], rows
        )
    )
    load = {"start": max(loads, key=lambda s: s["load_avg_1m"]), "end": loads[-1]}
    ratio = Ratio.paired(runs[True], runs[False], load)  # with / without: above 1, the decompositions' cost
    print(
        f"with / without the decompositions, per pair: {ratio.median:.2f}x ({ratio.spread.min:.2f}-"
        f"{ratio.spread.max:.2f}x over {ratio.spread.n} pairs)"
        + ("" if ratio.stability.stable else f" [{ratio.stability.reason}]")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

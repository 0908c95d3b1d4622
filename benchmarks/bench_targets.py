"""The project's own speed floors for `mnistlab bench`, checked on ratios measured side by side.

These are the project's checks, not the user's: `mnistlab bench`, bench.json and the report state
observations and ranges only. Here each floor is checked on the median of the per-repeat ratios
(repeats interleaved across cells), and the range is printed with it; a run on a busy machine
says so, and its verdicts are then not evidence either way.

    python benchmarks/bench_targets.py [--steps 100] [--repeats 5] [--dataset mnist] [--devices cpu cuda]
"""

from __future__ import annotations

import argparse
import sys

from mnistlab.core.device import available_devices
from mnistlab.core.timing import Ratio
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.fetching import fetch
from mnistlab.data.loader import read_split, split_train_val
from mnistlab.measure.bench import COMPUTE_BOUND_UTILISATION, BenchResult, run_bench
from mnistlab.measure.decomposition import ARITHMETIC

MLP_RESIDENT_FLOOR = 10.0  # resident MLP step vs the notebook's pipeline on the CPU
CNN_RESIDENT_FLOOR = 1.0  # the resident pipeline is never slower for the CNN


def target_checks(result: BenchResult) -> list[tuple[str, bool]]:
    """(what was checked, with its measured range; whether the median met the floor)."""
    checks = []
    for d in dict.fromkeys(c.device for c in result.cells):
        ref, res = result.cell("reference", d, "mlp"), result.cell("resident", d, "mlp")
        if d == "cpu" and ref and res:
            r = Ratio.paired(ref.step_s, res.step_s, result.load)
            checks.append(
                (
                    f"resident MLP vs reference on cpu: {r.marked()} (floor {MLP_RESIDENT_FLOOR:.0f}x)",
                    r.median >= MLP_RESIDENT_FLOOR,
                )
            )
        ref, res = result.cell("reference", d, "cnn"), result.cell("resident", d, "cnn")
        if ref and res:
            r = Ratio.paired(ref.step_s, res.step_s, result.load)
            checks.append(
                (
                    f"resident CNN vs reference on {d}: {r.marked()} (floor: never slower)",
                    r.median >= CNN_RESIDENT_FLOOR,
                )
            )
    for c in result.cells:
        if c.device == "cpu" and c.model == "cnn" and c.pipeline == "resident":
            how = (
                c.decomposition.brief()
                if c.decomposition
                else f"{c.utilisation:.0%} of the measured matmul peak (threshold {COMPUTE_BOUND_UTILISATION:.0%})"
            )
            checks.append((f"cnn on cpu is compute-bound (bound by arithmetic): {how}", c.bound == ARITHMETIC))
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--devices", nargs="+", default=None)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args(argv)
    spec, root = get_dataset(args.dataset), data_root()
    fetch(spec, root, log=lambda m: print(m, file=sys.stderr))
    train, _ = split_train_val(read_split(spec, root, train=True), 0.2, 0)
    result = run_bench(
        train,
        spec,
        models=["mlp", "cnn"],
        devices=args.devices or available_devices(),
        pipelines=["reference", "resident"],
        steps=args.steps,
        repeats=args.repeats,
        warmup=args.warmup,
        log=lambda m: print(m, file=sys.stderr),
    )
    for w in result.warnings():
        print(f"NOTE  {w}")
    checks = target_checks(result)
    for line, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A step's fixed part and per-sample part, measured (issue 27): each model at several batches on 1 and 2 threads.

    python benchmarks/decomposition.py --out DIR [--models mlp cnn] [--threads 1 2] [--batches 1 8 64 256 1024]
                                       [--batch 64] [--repeats 5]
    python benchmarks/decomposition.py --bench BENCH_DIR     (the tables of a bench's own decompositions)

Writes DIR/decomposition.json (measure/decomposition.py's validated file) and DIR/decomposition.png (step time
against batch, log-log, with the fit), and prints per cell the timings, the fit and what binds the step at the
cell's batch. The machine is named with every figure; its load is recorded at the start and end of each cell.
With --bench, measures nothing: prints the same tables for the decompositions a `mnistlab bench` folder holds
(bench.json, read and validated as the report reads it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from mnistlab.core.words import percent
from mnistlab.data.datasets import DataShape
from mnistlab.measure.decomposition import DecomposeSettings, bound_label, measure_decomposition, write_decompositions
from mnistlab.measure.table import text_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path)
    p.add_argument("--bench", type=Path, help="a bench folder: print its decompositions' tables, measure nothing")
    p.add_argument("--models", nargs="+", default=["mlp", "cnn"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64, 256, 1024])
    p.add_argument("--batch", type=int, default=64, help="the cell's batch, where the fixed share is read")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--chunk-s", type=float, default=0.05, help="seconds of steps per timed repeat of one batch")
    args = p.parse_args(argv)
    if args.bench is not None:
        from mnistlab.core.errors import MnistlabError
        from mnistlab.core.schema import read_result
        from mnistlab.measure.bench import BenchResult

        try:
            results = read_result(BenchResult, args.bench).decompositions
        except MnistlabError as e:
            print(e, file=sys.stderr)
            return 2
        if not results:
            print(f"{args.bench}: its bench.json holds no decomposition (a bench from before them)", file=sys.stderr)
            return 2
        print_tables(results)
        return 0
    if args.out is None or not args.out.is_dir():
        print(f"{args.out}: no such directory (create it first)", file=sys.stderr)
        return 2
    shape = DataShape((1, 28, 28), 10)
    results = [
        measure_decomposition(
            m,
            shape,
            batch_size=args.batch,
            settings=DecomposeSettings(tuple(args.batches), args.repeats, args.chunk_s),
            threads=t,
            log=lambda s: print(s, file=sys.stderr),
        )
        for m in args.models
        for t in args.threads
    ]
    print_tables(results)
    write_decompositions(results, args.out)
    from mnistlab.report.plots import plot_decomposition

    plot_decomposition(results, args.out / "decomposition.png")
    return 0


def print_tables(results: list) -> None:
    """Per model and thread count: each batch's timings against the fit, then the parts and the judgement."""
    rows, summary = [], []
    for d in results:
        fit = d.fit
        for b, ts in sorted(d.timings.items()):
            med = statistics.median(ts)
            rows.append(
                [
                    d.model,
                    str(d.threads),
                    str(b),
                    f"{med * 1e3:.3f}",
                    f"{min(ts) * 1e3:.3f}-{max(ts) * 1e3:.3f}",
                    f"{(max(ts) - min(ts)) / med:.0%}",
                    f"{fit.at(b) * 1e3:.3f}",
                    f"{(med - fit.at(b)) / med:+.0%}",
                ]
            )
        fs, ps, share = d.fixed_spread, d.per_sample_spread, d.fixed_share_spread()
        level, bw, _ = d.bandwidth
        summary.append(
            [
                d.model,
                str(d.threads),
                f"{fit.fixed_s * 1e3:.3f} ({fs.min * 1e3:.3f}-{fs.max * 1e3:.3f})",
                f"{fit.per_sample_s * 1e6:.2f} ({ps.min * 1e6:.2f}-{ps.max * 1e6:.2f})",
                f"{percent(d.fixed_share)} ({percent(share.min)}-{percent(share.max)})",
                f"{d.compute_per_sample_s * 1e6:.2f} @ {d.compute_flops_per_s / 1e9:,.0f} GFLOP/s",
                f"{d.memory_per_sample_s * 1e6:.2f} @ {level} {bw / 1e9:,.0f} GB/s",
                f"{d.footprint_bytes / 2**20:.2f}",
                f"{d.dispatch_floor_s * 1e3:.3f}",
                f"{percent(fit.residual_median)} / {percent(fit.residual_max)}",
                bound_label(d.binds),
                "stable" if d.stability.stable else "unstable",
            ]
        )
    machines = sorted({d.machine.split(" (")[0] for d in results})
    repeats = sorted({len(ts) for d in results for ts in d.timings.values()})
    print(
        f"machine: {', '.join(machines)}; the cell's batch: {', '.join(sorted({str(d.batch_size) for d in results}))}; "
        f"{'/'.join(map(str, repeats))} interleaved repeats per batch; dates "
        f"{', '.join(sorted({str(d.date) for d in results}))}"
    )
    print(text_table(["model", "threads", "batch", "ms/step median", "min-max", "spread", "fit ms", "residual"], rows))
    print()
    print(
        text_table(
            [
                "model",
                "threads",
                "fixed ms (repeats)",
                "per sample us (repeats)",
                "fixed share at the cell's batch",
                "arith. floor us/sample",
                "memory floor us/sample",
                "working set MiB",
                "dispatch floor ms",
                "residual med/max",
                "binds",
                "stability",
            ],
            summary,
        )
    )
    print()
    for d in results:
        print(d.words())


if __name__ == "__main__":
    sys.exit(main())

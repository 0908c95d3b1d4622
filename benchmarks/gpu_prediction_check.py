"""The GPU prediction checked against published times: the train_mnist_fast runs on a GTX 1660 Ti (issue 27).

    python benchmarks/gpu_prediction_check.py [--costs-us 2 3 5 7 10]

Counts, here on the CPU, every part of each published run as its notebook wrote it (building the model, the
first training step, which creates the optimizer's state, the steady steps, the short last step, the test
batches), then predicts the run's time on the GPU it was published on with the model that answers Q6/Q9
(measure/prediction.Prediction.of: per part the largest of operations x the dispatch cost, bytes at the
memory's bandwidth, FLOPs at the rate PyTorch uses by default), summed over the parts; measure/published.py
has the runs and their sources. The dispatch cost per eager operation is an assumption (5 us), so the table
shows the bound across --costs-us. A published time below the predicted lower bound would prove the model
wrong. Exit code 1 if it does.

What cannot be counted as it was: the runs used PyTorch 1.8; this counts torch's own for-loop Adam and Adadelta
(foreach=False, as 1.8's were), which dispatch about as many operations per parameter as 1.8's, and zero_grad
setting gradients to zero (1.8's default) rather than to None.
"""

from __future__ import annotations

import argparse
import sys

from mnistlab.measure.gpus import GPUS
from mnistlab.measure.published import PUBLISHED, RUNS, RunPrediction, sweep
from mnistlab.measure.table import text_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--costs-us", nargs="+", type=float, default=[2, 3, 5, 7, 10])
    args = p.parse_args(argv)
    costs = sorted(c * 1e-6 for c in args.costs_us)
    wrong = False
    for name, parts_of in RUNS.items():
        run = PUBLISHED[name]
        gpu = GPUS[run.gpu]
        parts = parts_of(True)  # each part counted at its own batch
        at5 = RunPrediction(gpu, tuple(parts))
        print(f"{name}: {run.source}; published {run.seconds:.2f} s ({run.spread}); {run.accuracy}")
        print(f"  timed: {run.timed}")
        print(
            f"  GPU row: {gpu.name}: fp32 {gpu.fp32_flops_per_s / 1e12:.2f} TFLOP/s (TF32: "
            f"{'none' if gpu.tf32_flops_per_s <= gpu.fp32_flops_per_s else f'{gpu.tf32_flops_per_s / 1e12:.1f}'}), "
            f"{gpu.bandwidth_bytes_per_s / 1e9:.0f} GB/s ({gpu.source}); {gpu.note}"
        )
        rows = []
        for part in parts:
            pr = at5.prediction(part)
            rows.append(
                [
                    part.what,
                    f"{part.times}",
                    f"{part.work.ops}",
                    f"{part.work.flops / 1e6:,.1f}",
                    f"{part.work.conv_flops / 1e6:,.1f}",
                    f"{part.work.bytes / 1e6:,.2f}",
                    f"{pr.launch_s * 1e6:,.1f}",
                    f"{pr.bandwidth_s * 1e6:,.1f}",
                    f"{pr.compute_s * 1e6:,.1f}",
                    pr.binds,
                    f"{part.times * pr.bound_s * 1e3:,.1f}",
                ]
            )
        print(
            text_table(
                [
                    "part (counted once here, on the CPU)",
                    "times",
                    "ops",
                    "MFLOP",
                    "of which conv",
                    "MB",
                    "launch us",
                    "bandwidth us",
                    "compute us",
                    "binds",
                    "x times: ms",
                ],
                rows,
            )
        )
        rows = []
        for pred in sweep(gpu, parts, costs):
            rows.append(
                [
                    f"{pred.dispatch_cost_s * 1e6:g}",
                    f"{pred.floor_s('launch'):.3f}",
                    f"{pred.floor_s('bandwidth'):.3f}",
                    f"{pred.floor_s('compute'):.3f}",
                    f"{pred.bound_s:.3f}",
                    pred.binds,
                    f"{pred.no_overlap_s:.3f}",
                    f"{run.seconds:.3f}",
                    f"{run.seconds / pred.bound_s:.2f}x",
                    "holds" if pred.holds(run.seconds) else "WRONG",
                ]
            )
            wrong |= not pred.holds(run.seconds)
        print(
            text_table(
                [
                    "us per op",
                    "launch s",
                    "bandwidth s",
                    "compute s",
                    "lower bound s",
                    "binds",
                    "no overlap s",
                    "published s",
                    "published / bound",
                    "model",
                ],
                rows,
            )
        )
        print(
            f"  {at5.ops:,} operations in the run: the published {run.seconds:.2f} s is "
            f"{run.seconds / at5.ops * 1e6:.1f} us per operation if it were all dispatch and launch"
        )
        print()
    print(
        "lower bound: per part the largest of its floors (launch: operations x us per op; bandwidth: bytes at the "
        "GPU's bandwidth; compute: convolution FLOPs at the fp32/TF32 rate cuDNN may use, the rest at the FP32 "
        "rate of float32 matmuls), times the part's count, summed; no overlap: every floor added (not a bound)"
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

"""What does `--checkpoint-every STEPS` cost an epoch? (issue 19)

Trains one epoch of the MLP and of the CNN with and without mid-epoch checkpoints, side by side in
one process, the two interleaved repeat after repeat (off, on, off, on, ...) so that a change in the
machine's load hits both alike; each is a whole `mnistlab train` run (the trainer, its atomic writes
and fsyncs), and the time compared is metrics.csv's train seconds of the epoch. Prints, per model,
the ratio with its range and stability (core/timing.py) and the cost of one checkpoint.

    python benchmarks/checkpoint_cost.py [--repeats 3] [--every 100] [--cnn-steps 300] [--dataset mnist]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from mnistlab.core.device import cpu_name
from mnistlab.core.environment import load_snapshot
from mnistlab.core.timing import Ratio
from mnistlab.jobs.train import train_run as train
from mnistlab.training.config import TrainConfig


def epoch(cfg: TrainConfig, folder: Path) -> tuple[float, int]:
    """The epoch's train seconds and steps, from the run's metrics.csv."""
    row = train(cfg, run_dir=folder, log=lambda m: None, progress=False, tensorboard=False).metrics()[0]
    return row["train_seconds"], int(row["steps"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--every", type=int, default=100, help="steps between mid-epoch checkpoints")
    p.add_argument("--cnn-steps", type=int, default=300, help="steps of the CNN's epoch (the MLP's is whole)")
    p.add_argument("--dataset", default="mnist")
    args = p.parse_args(argv)
    start = load_snapshot()
    print(f"{cpu_name()}, {start.get('cpu_count')} logical cores; load average {start.get('load_avg_1m')} at the start")
    with tempfile.TemporaryDirectory(prefix="mnistlab-ckpt-") as tmp:
        for model, steps in (("mlp", None), ("cnn", args.cnn_steps)):
            base = TrainConfig(model=model, dataset=args.dataset, epochs=1, device="cpu", max_steps=steps)
            times: dict[bool, list[float]] = {False: [], True: []}
            n = 0
            for r in range(args.repeats):
                for on in (False, True):
                    cfg = base.replace(checkpoint_every=args.every) if on else base
                    seconds, done = epoch(cfg, Path(tmp) / f"{model}-{r}-{on}")
                    times[on].append(seconds)
                    n = done // args.every
            load = {"start": start, "end": load_snapshot()}
            ratio = Ratio.paired(times[True], times[False], load)
            extra = statistics.median(times[True]) - statistics.median(times[False])
            print(
                f"{model}: epoch {statistics.median(times[False]):.2f} s without, "
                f"{statistics.median(times[True]):.2f} s "
                f"with a checkpoint every {args.every} steps ({n} per epoch); without them the epoch is "
                f"{ratio.marked()}; "
                f"about {1e3 * extra / max(n, 1):.1f} ms per checkpoint (median difference / checkpoints)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

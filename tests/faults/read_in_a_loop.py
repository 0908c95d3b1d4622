"""The readers of the readers-while-training test (tests/faults/test_concurrent_runs.py), in a process of
their own: `python read_in_a_loop.py RUN OUT STOP` runs plot, eval and report on RUN in a loop, in this
one process (the CLI's main, as `mnistlab plot/eval/report` runs it), until the file STOP exists, then
prints the number of rounds. Their exit codes vary with the moment (no epoch yet, no checkpoint yet) and
are not checked; an exception from any of them ends this process with a traceback and exit code 1."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mnistlab.cli import main

run, out, stop = map(Path, sys.argv[1:4])
reads = 0
while not stop.exists():
    if not (run / "metrics.csv").exists():
        time.sleep(0.01)
        continue
    main(["plot", str(run), "--out", str(out / "p.png")])
    main(["eval", str(run), "--device", "cpu", "--json"])
    if reads % 5 == 0:  # the report draws every figure: slower, so every 5th round
        main(["report", str(run), "--out", str(out)])
    reads += 1
print(f"rounds: {reads}")

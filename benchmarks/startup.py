"""How long does the command line take to answer? `mnistlab --help` and `mnistlab train --help`, against
`import torch` alone, each in a fresh interpreter, interleaved, repeated; prints median and min-max.

    python benchmarks/startup.py [--repeats 7]

Target: both helps under 0.3 s on a 2-core machine (they import no torch).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "mnistlab --help": [sys.executable, "-m", "mnistlab", "--help"],
    "mnistlab train --help": [sys.executable, "-m", "mnistlab", "train", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'pass' (interpreter alone)": [sys.executable, "-c", "pass"],
}
TARGET_S = 0.3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(args.repeats):
        for name, cmd in CASES.items():  # interleaved: drift hits every case alike
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t0)
    ok = True
    for name, ts in times.items():
        med = statistics.median(ts)
        mark = ""
        if name.startswith("mnistlab"):
            ok &= med < TARGET_S
            mark = f"  (target < {TARGET_S} s: {'met' if med < TARGET_S else 'missed'})"
        print(f"{name:<40} median {med:.3f} s  (min {min(ts):.3f}, max {max(ts):.3f}; {len(ts)} runs){mark}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Print the README's "Measured figures" as Markdown, from a lab directory written by the tool.

    python scripts/readme_figures.py LAB_DIR        # e.g. runs/lab-20261127-101500-ab12cd

Every figure comes from the lab's own files (lab.json, each run's metrics.csv, test.json and
env.json, bench/bench.json): times as median (min-max), each session's first epoch apart, speed-ups
with their range over the bench's interleaved repeats, and the machine named, with its load.
Paste the output between the README's `<!-- figures:begin -->` and `<!-- figures:end -->` marks.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnistlab.core.errors import MnistlabError
from mnistlab.core.rundir import RunDir, read_json
from mnistlab.core.schema import read_result
from mnistlab.measure.bench import BenchResult, bound_label, ceilings_line
from mnistlab.measure.epochs import epoch_timing
from mnistlab.measure.speedrun import SpeedrunResult


def _load(snapshot: dict | None) -> str:
    return f"{snapshot['load_avg_1m']:.2f}" if snapshot and snapshot.get("load_avg_1m") is not None else "n/a"


def figures(lab_dir: Path) -> str:
    lab = read_json(lab_dir / "lab.json")
    env = lab["env"]
    out = [
        f"Measured with `mnistlab lab{' --quick' if lab.get('quick') else ''}` on {env['cpu']} "
        f"({env['cpu_count']} logical cores, torch {env['torch']} using {env['torch_threads']} threads"
        + (f", GPU: {', '.join(env['cuda_devices'])}" if env.get("cuda_devices") else ", no GPU")
        + ").",
        "",
    ]
    out += [
        "| run | epochs | first epoch of each session | steady-state epoch, median (min\u2013max) | test accuracy | "
        "test time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in lab["runs"]:
        run = RunDir(lab_dir / name)
        rows, test = run.metrics(), run.test() or {}
        t = epoch_timing(rows)
        n = len(t.steady_s)
        steady = (
            f"{t.spread.median:.2f} s ({t.spread.min:.2f}\u2013{t.spread.max:.2f} s, {n} epoch{'s' * (n != 1)})"
            if t.steady_s
            else "\u2013"
        )
        cap = run.config().get("max_steps")
        tested = f"{test['accuracy']:.2%} | {test['seconds']:.2f} s" if test else "\u2013 | \u2013"
        out.append(
            f"| {name} ({run.env().get('device', '?')}) | {len(rows)}{f' ({cap} steps each)' if cap else ''} | "
            f"{', '.join(f'{x:.2f} s' for x in t.cold_s)} | {steady} | {tested} |"
        )
    if lab.get("bench"):
        bench = read_result(BenchResult, lab_dir / lab["bench"])
        s, load = bench.settings, bench.load
        out += [
            "",
            f"`mnistlab bench` ({s['warmup']} warm-up steps, then {s['repeats']} interleaved repeats of "
            f"{s['steps']} steps per cell; load average {_load(load.get('start'))} at the start, "
            f"{_load(load.get('end'))} at the end):",
            "",
            "| cell | ms/step, median (min\u2013max) | samples/s | data share | utilisation of the measured compute "
            "ceiling | "
            "bound | stability |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for c in bench.cells:
            ms = c.step
            out.append(
                f"| {c.key} | {ms.median * 1e3:.2f} ({ms.min * 1e3:.2f}\u2013{ms.max * 1e3:.2f}) | "
                f"{c.samples_per_s:,.0f} | {c.share('data'):.0%} | {c.utilisation:.1%} | {bound_label(c.bound)} | "
                f"{'stable' if c.stability.stable else 'unstable'} |"
            )
        out += [""] + [f"- {u.what}: {u.ratio.marked()}." for u in bench.speedups()]
        out += [f"- {w}" for w in bench.warnings()]
        out += [
            f"- {ceilings_line(d, name, bench.ceilings.get(d), bench.peaks[d], bench.achieved(d))}."
            for d, name in bench.devices.items()
        ]
    if lab.get("speedrun"):
        sr = read_result(SpeedrunResult, lab_dir / lab["speedrun"])
        out += [
            "",
            "`mnistlab speedrun` in the same lab:",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k} | {v} |" for k, v in sr.rows()),
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    try:
        print(figures(Path(args[0])))
    except (MnistlabError, KeyError, TypeError) as e:
        print(f"readme_figures: error: {args[0]}: not a complete lab directory ({e})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

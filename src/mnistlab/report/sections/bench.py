"""mnistlab bench (bench.json): where each training step's time goes; the evidence for Q6 and Q9."""

from __future__ import annotations

from mnistlab.measure.bench import (
    COMPUTE_BOUND_UTILISATION,
    INPUT_BOUND_SHARE,
    PHASES,
    BenchResult,
    Cell,
    ceilings_line,
)
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.plots import plot_bench
from mnistlab.report.sections.section import Section


def _cell_row(c: Cell) -> list[str]:
    star = "*" if c.extrapolated else ""
    return [
        c.key,
        f"{c.epoch_s_median:.2f}{star} ({c.epoch_s_min:.2f}\u2013{c.epoch_s_max:.2f})",
        f"{c.step_median_s * 1e3:.3f}",
        f"{c.samples_per_s:,.0f}",
        f"{c.warmup_s[0] * 1e3:.2f}" if c.warmup_s else "-",
        *(f"{c.share(p):.0%}" for p in PHASES),
        f"{c.achieved_flops_per_s / 1e9:.1f}",
        f"{c.utilisation:.1%}",
        c.bound,
        "stable" if c.stability.stable else "unstable",
    ]


def write(doc: Document, inputs: Inputs) -> None:
    bench = inputs.bench
    if bench is None:
        return
    doc.h2("Where the time goes (mnistlab bench; the evidence for Q6 and Q9)")
    # measured ceilings beside the theoretical one (measure/ceilings.py), as a table (issue 28: words a reader scans)
    doc.table(
        ["each device's ceilings: measured, beside the theoretical"],
        [
            [ceilings_line(k, v, bench.ceilings.get(k), bench.peaks[k], bench.achieved(k))]
            for k, v in bench.devices.items()
        ],
    )
    doc.table(
        [
            "cell",
            "epoch s median (min\u2013max)",
            "ms/step",
            "samples/s",
            "1st warm-up step ms",
            *PHASES,
            "GFLOP/s",
            "utilisation",
            "bound by",
            "stability",
        ],
        [_cell_row(c) for c in bench.cells],
    )
    doc.bullets([f"{u.what}: {u.ratio.words()}." for u in bench.speedups()])  # stability: said once (issue 28)
    name = inputs.bench_dir.name if inputs.bench_dir else "bench"
    doc.image(plot_bench(bench, inputs.figs / f"{name}-bench.png"), "Share of each training step by phase")


SECTION = Section(write, order=150)


def legend(bench: BenchResult) -> str:
    """How to read the bench's table: said once, in the report's 'How to read this' (issue 28)."""
    st = bench.settings
    return (
        f"The bench: each cell ran {st['warmup']} warm-up steps (the first, cold, shown apart), then "
        f"{st['repeats']} repeats of {st['steps'] or 'an epoch of'} steps at batch {st['batch_size']}, interleaved "
        f"across cells; median (min\u2013max) of the repeats; * extrapolated to a full epoch. Phase shares: of the "
        f"sum of the phases, from a separate pass synchronised at each phase boundary. Utilisation: of the "
        f"measured compute ceiling (never above 100%). Bound by: input where data and copy take "
        f"{INPUT_BOUND_SHARE:.0%} of the step or more; else what the model's step measured at several batch sizes "
        "says (Q9's figure): its fixed "
        f"per-step cost where that is most of the step, else arithmetic or memory, whichever floor its per-sample "
        f"part is closer to, or 'between' two"
        + (
            ""
            if all(c.decomposition for c in bench.cells)
            else "; a bench.json without those measurements: the largest of the step's floors"
        )
        + (
            ""
            if all(c.floors for c in bench.cells)
            else f"; a bench.json without counted floors: a fixed threshold instead "
            f"({COMPUTE_BOUND_UTILISATION:.0%} of the ceiling: compute above, overhead below)"
        )
        + "."
    )

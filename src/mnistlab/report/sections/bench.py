"""mnistlab bench (bench.json): where each training step's time goes; the evidence for Q6 and Q9."""

from __future__ import annotations

from mnistlab.measure.bench import COMPUTE_BOUND_UTILISATION, INPUT_BOUND_SHARE, PHASES, Cell, ceilings_line
from mnistlab.core.timing import UNSTABLE_SPREAD
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.plots import plot_bench
from mnistlab.report.sections.section import Section


def _cell_row(c: Cell) -> list[str]:
    star = "*" if c.extrapolated else ""
    return [c.key, f"{c.epoch_s_median:.2f}{star} ({c.epoch_s_min:.2f}\u2013{c.epoch_s_max:.2f})",
            f"{c.step_median_s * 1e3:.3f}", f"{c.samples_per_s:,.0f}",
            f"{c.warmup_s[0] * 1e3:.2f}" if c.warmup_s else "-",
            *(f"{c.share(p):.0%}" for p in PHASES),
            f"{c.achieved_flops_per_s / 1e9:.1f}", f"{c.utilisation:.1%}", c.bound,
            "stable" if c.stability.stable else "unstable"]


def write(doc: Document, inputs: Inputs) -> None:
    bench = inputs.bench
    if bench is None:
        return
    doc.h2("Where the time goes (mnistlab bench; the evidence for Q6 and Q9)")
    for k, v in bench.devices.items():  # measured ceilings beside the theoretical one (measure/ceilings.py)
        doc.p(ceilings_line(k, v, bench.ceilings.get(k), bench.peaks[k], bench.achieved(k)) + ".")
    loads = [f"{w} {v['load_avg_1m']:.2f}" for w, v in bench.load.items() if v and v.get("load_avg_1m") is not None]
    if loads:
        doc.p(f"Load average (1 min) during the bench: {', '.join(loads)}, on "
              f"{next(v['cpu_count'] for v in bench.load.values() if v)} logical cores.")
    doc.bullets(bench.warnings())
    doc.table(["cell", "epoch s median (min\u2013max)", "ms/step", "samples/s", "1st warm-up step ms", *PHASES,
               "GFLOP/s", "utilisation", "bound by", "stability"], [_cell_row(c) for c in bench.cells])
    st = bench.settings
    doc.p(f"Each cell: {st['warmup']} warm-up steps (the first one, cold, shown apart), then {st['repeats']} repeats "
          f"of {st['steps'] or 'an epoch of'} steps at batch {st['batch_size']}, interleaved across cells so "
          f"that a change in the machine's load hits all of them alike; median (min\u2013max) of the repeats. "
          f"A cell is unstable when its repeats spread by more than {UNSTABLE_SPREAD:.0%} of their median, "
          f"when it had a single repeat, or when the machine was busy. * extrapolated to a full epoch. Phase "
          f"shares are of the sum of the phases, from a separate pass with a synchronisation at each phase "
          f"boundary. Utilisation is of the measured compute ceiling, which a step that beats every probe raises "
          f"to what it reached, so it never passes 100%. Bound by: the input where data and copy take "
          f"{INPUT_BOUND_SHARE:.0%} of the step or more; else what the model's step measured at several batch sizes "
          f"says (Q9's figure): its fixed per-step cost where that is most of the step, else arithmetic or memory, "
          f"whichever floor its per-sample part is closer to, or 'between' two"
          + ("" if all(c.decomposition for c in bench.cells) else
             "; a bench.json without those measurements: the largest of the step's floors"
             + ("" if all(c.floors for c in bench.cells) else
                f", or without floors a threshold of {COMPUTE_BOUND_UTILISATION:.0%} of the ceiling")) + ".")
    doc.bullets([f"{u.what}: {u.ratio.marked()}." for u in bench.speedups()])
    name = inputs.bench_dir.name if inputs.bench_dir else "bench"
    doc.image(plot_bench(bench, inputs.figs / f"{name}-bench.png"), "Share of each training step by phase")


SECTION = Section(write, order=150)

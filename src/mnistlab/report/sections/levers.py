"""bench --implementations (levers.json): what each speed lever buys against eager fp32."""

from __future__ import annotations

from mnistlab.measure.bench import bound_label
from mnistlab.measure.levers_bench import LeversResult, observations
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def levers_section(doc: Document, levers: LeversResult) -> None:
    doc.h2("Speed levers: what each one buys")
    for dev, peaks in levers.peaks.items():
        doc.p(
            f"{dev}: {levers.devices.get(dev, dev)}; measured matmul peaks: "
            + ", ".join(f"{k} {v / 1e9:,.1f} GFLOP/s" for k, v in peaks.items())
            + "."
        )
    rows = []
    for c in levers.cells:
        if c.unavailable:
            rows.append([f"{c.device}/{c.model}", c.implementation, "not available", "", "", "", ""])
            continue
        r = levers.vs_eager(c)
        rows.append(
            [
                f"{c.device}/{c.model}",
                c.implementation,
                f"{c.step_median_s * 1e3:.2f}",
                f"{c.step.min * 1e3:.2f}-{c.step.max * 1e3:.2f}",
                "baseline" if c.implementation == "eager" else r.words() if r else "-",
                f"{c.utilisation:.0%} of {c.compute_dtype} ({bound_label(c.bound)})",
                "stable" if c.stability.stable else "unstable",
            ]
        )
    doc.table(
        ["device/model", "implementation", "ms/step (median)", "range", "vs eager fp32", "utilisation", "stability"],
        rows,
    )
    for line in observations(levers):
        doc.p(line)


def write(doc: Document, inputs: Inputs) -> None:
    for result in inputs.results_of(LeversResult):
        levers_section(doc, result)


SECTION = Section(write, order=170, reads=LeversResult)

"""mnistlab bench --nproc (scaling.json): one process against N, and the all-reduce's share of a step."""

from __future__ import annotations

from mnistlab.measure.scaling import ScalingResult, scaling_observations, scaling_rows
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def scaling_section(doc: Document, result: ScalingResult) -> None:
    rows = scaling_rows(result, "\u2013")
    doc.h2("Data-parallel scaling (mnistlab bench --nproc)")
    doc.table(
        [
            "model",
            "device",
            "processes",
            "ms/step (median)",
            "min\u2013max",
            "samples/s",
            "all-reduce share",
            "stability",
        ],
        rows,
    )
    doc.p(
        "Each configuration ran in fresh processes at the same global batch; the all-reduce share is the "
        "step as DDP trains against the same step under no_sync() (compute alone)."
    )
    doc.bullets(scaling_observations(result))


def write(doc: Document, inputs: Inputs) -> None:
    for result in inputs.results_of(ScalingResult):
        scaling_section(doc, result)


SECTION = Section(write, order=160, reads=ScalingResult)

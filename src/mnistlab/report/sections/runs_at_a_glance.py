"""Every training run in one table: first epoch apart, steady state as median (min-max)."""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import RUN_HEADERS, run_summary_row
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    if not inputs.runs:
        return
    doc.h2("Training runs at a glance")
    doc.table(RUN_HEADERS, [run_summary_row(r) for r in inputs.runs])


SECTION = Section(write, order=145)

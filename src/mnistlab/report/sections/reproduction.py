"""The notebook's printed figures beside ours, each difference explained (report/reproduction.py)."""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.reproduction import HEADERS, reproduction
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    if not (inputs.runs or inputs.bench):
        return
    doc.h2("The notebook's numbers beside ours")
    doc.table(HEADERS, reproduction(inputs).rows, css="text")


SECTION = Section(write, order=5)

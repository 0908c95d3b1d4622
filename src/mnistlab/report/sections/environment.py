"""The notebook's torch version and CUDA check, from the lab's or the first run's environment record."""

from __future__ import annotations

from mnistlab.core.environment import format_environment
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    if inputs.env:  # a partial env.json has no section
        doc.h2("Environment (the notebook's torch version and CUDA check)")
        doc.pre(format_environment(inputs.env))


SECTION = Section(write, order=195)

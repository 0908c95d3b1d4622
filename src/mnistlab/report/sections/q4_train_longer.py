"""Q4: should the MLP train longer, or is it already too long? Read off its validation curve."""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import training_observations
from mnistlab.report.sections.mlp_cpu import missing, mlp_run
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    mlp = mlp_run(inputs)
    if mlp is None:
        return
    notes = training_observations(mlp)
    doc.h2("Q4. Should the MLP train longer, or is it already too long?")
    doc.p("Answer: " + notes[0].split(": ", 1)[1])
    doc.bullets(notes[1:])


SECTION = Section(write, "Q4", missing, order=70)

"""Q8: the CNN on the GPU."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.gpu_runs("cnn") else inputs.no_gpu_run("cnn")


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    g = inputs.gpu_runs("cnn")[0]
    test = g.test()
    doc.h2("Q8. The CNN on the GPU")
    doc.p(f"Answer: {g.name} on {g.env().get('device')}: {epoch_timing(g.metrics()).words()}"
          + (f"; test accuracy {test['accuracy']:.2%}" if test else "") + ".")
    run_section(doc, g, inputs.figs)


SECTION = Section(write, "Q8", missing, order=110)

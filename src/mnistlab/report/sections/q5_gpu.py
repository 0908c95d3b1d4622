"""Q5: training and testing on the GPU, from a GPU run of the MLP."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.gpu_runs("mlp") else inputs.no_gpu_run("mlp")


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    g = inputs.gpu_runs("mlp")[0]
    doc.h2("Q5. Training and testing on the GPU")
    doc.p(f"Answer: the same training and test loops run on every device; the model and each batch are moved "
          f"with .to(device) (mnistlab train --device cuda). {g.name} ran on {g.env().get('device')}: "
          f"{epoch_timing(g.metrics()).words()}.")
    run_section(doc, g, inputs.figs)


SECTION = Section(write, "Q5", missing, order=80)

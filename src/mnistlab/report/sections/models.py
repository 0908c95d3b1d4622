"""The notebook's MyModule, MLP and CNN cells: each model's layers and parameters, from its code."""

from __future__ import annotations

from mnistlab.measure.summary import summarize
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    if not inputs.model_codes:
        return
    doc.h2("The models (the notebook's MyModule, MLP and CNN cells)")
    for m, (code, shape) in inputs.model_codes.items():
        sm = summarize(code, batch_size=64, shape=shape)
        doc.table(
            ["model", "parameters", "trainable", "input", "output"],
            [[m, f"{sm.total:,}", f"{sm.trainable:,}", str(list(sm.input_shape)), str(list(sm.output_shape))]],
        )
        doc.pre(sm.tree)
        doc.table(
            ["state_dict key", "shape", "parameters"], [[n, str(list(sh)), f"{c:,}"] for n, sh, c in sm.parameters]
        )


SECTION = Section(write, order=196)

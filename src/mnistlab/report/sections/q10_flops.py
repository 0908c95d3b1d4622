"""Q10: parameters, MACs and FLOPs of each model (the notebook's thop.profile), counted from the model code."""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.how_to_read import HOW
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.model_codes else "no model in these directories"


def sentence(inputs: Inputs) -> str:
    at_1 = [inputs.profile(m, 1) for m in inputs.model_codes]
    said = "; ".join(
        f"the {p.model.upper() if p.model in ('mlp', 'cnn') else p.model} has {p.parameters:,} parameters "
        f"and does {p.macs:,} MACs per image"
        for p in at_1
    )
    return said[:1].upper() + said[1:] + " (thop calls MACs 'FLOPs')."


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    profiles = [inputs.profile(m, b) for m in inputs.model_codes for b in (1, 64)]
    doc.h2("Q10. Parameters, MACs and FLOPs of each model (the notebook's thop.profile, batch 1)")
    doc.table(
        [
            "model",
            "batch",
            "parameters",
            "MACs (thop's 'FLOPs')",
            "forward FLOPs",
            "backward FLOPs",
            "training-step FLOPs",
        ],
        [
            [
                p.model,
                p.batch_size,
                f"{p.parameters:,}",
                f"{p.macs:,}",
                f"{p.forward_flops:,}",
                f"{p.backward_flops:,}",
                f"{p.train_step_flops:,}",
            ]
            for p in profiles
        ],
    )
    doc.p(sentence(inputs) + " MACs, FLOPs and how the backward pass is counted: ", HOW, ".")


SECTION = Section(
    write, "Q10", missing, order=140, sentence=sentence, ask="Parameters and FLOPs of each model (thop.profile)"
)

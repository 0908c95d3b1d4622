"""Q10: parameters, MACs and FLOPs of each model (the notebook's thop.profile), counted from the model code."""

from __future__ import annotations

from mnistlab.measure.profiling import MACS_VS_FLOPS, profile_model
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.model_codes else "no model in these directories"


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    profiles = [profile_model(code, b, shape) for code, shape in inputs.model_codes.values() for b in (1, 64)]
    doc.h2("Q10. Parameters, MACs and FLOPs of each model (the notebook's thop.profile, batch 1)")
    at_1 = {p.model: p for p in profiles if p.batch_size == 1}
    if "mlp" in at_1 and "cnn" in at_1:
        mlp, cnn = at_1["mlp"], at_1["cnn"]
        doc.p(f"Answer: at batch 1 the MLP has {mlp.parameters:,} parameters and does {mlp.macs:,} MACs (what thop "
              f"calls FLOPs); the CNN has {cnn.parameters:,} parameters and does {cnn.macs:,} MACs, "
              f"{cnn.macs / mlp.macs:.0f}x the MLP's work with fewer parameters, because each convolution weight is "
              f"reused at every position of the image.")
    else:
        doc.p("Answer: the table below, counted from each model's code at batch 1 and 64.")
    doc.table(["model", "batch", "parameters", "MACs (thop's 'FLOPs')", "forward FLOPs", "backward FLOPs",
               "training-step FLOPs"],
              [[p.model, p.batch_size, f"{p.parameters:,}", f"{p.macs:,}", f"{p.forward_flops:,}",
                f"{p.backward_flops:,}", f"{p.train_step_flops:,}"] for p in profiles])
    doc.p(MACS_VS_FLOPS + " The training step counts the backward pass as it runs (FlopCounterMode), "
          "not as an assumed 3x the forward.")


SECTION = Section(write, "Q10", missing, order=140)

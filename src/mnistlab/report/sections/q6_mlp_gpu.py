"""Q6: is the MLP faster on the GPU, and is the speed-up what you would expect?"""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.device_question import bench_lines, comparison, missing, not_answered
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    reason, evidence = missing(inputs, "mlp"), bench_lines(inputs, "mlp")
    if reason and not evidence:
        return
    doc.h2("Q6. Is the MLP faster on the GPU, and is the speed-up what you would expect?")
    doc.p(not_answered(reason, "What limits each MLP cell") if reason
          else comparison(inputs, "mlp") + (" What limits each MLP cell, measured by the bench:" if evidence else ""))
    doc.bullets(evidence)


SECTION = Section(write, "Q6", lambda inputs: missing(inputs, "mlp"))

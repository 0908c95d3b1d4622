"""Q6: is the MLP faster on the GPU, and is the speed-up what you would expect?"""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.device_question import answer, bench_lines, missing, predicted, sentence
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    evidence = bench_lines(inputs, "mlp")
    if missing(inputs, "mlp") and not evidence:
        return
    doc.h2("Q6. Is the MLP faster on the GPU, and is the speed-up what you would expect?")
    answer(doc, inputs, "mlp", evidence, "What limits each MLP cell")


SECTION = Section(
    write,
    "Q6",
    lambda inputs: missing(inputs, "mlp"),
    lambda inputs: predicted(inputs, "mlp"),
    order=90,
    sentence=lambda inputs: sentence(inputs, "mlp"),
    ask="Is the MLP faster on the GPU? As expected?",
)

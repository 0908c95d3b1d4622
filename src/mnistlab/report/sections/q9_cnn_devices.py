"""Q9: the CNN on the CPU against the GPU, and how it differs from the MLP.

Every sentence about what limits a step is the bench cell's one judgement (Cell.bound) in
measure/bench.py's words: this section words no bound of its own."""

from __future__ import annotations

from mnistlab.measure.bench import cell_sentence
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.device_question import bench_lines, comparison, missing, not_answered
from mnistlab.report.sections.section import Section


def _contrast(inputs: Inputs) -> list[str]:
    """The MLP's CPU cell beside the CNN's, and what their two bounds imply together."""
    bench = inputs.bench
    m, c = (bench.cell("resident", "cpu", x) if bench else None for x in ("mlp", "cnn"))
    if not (m and c):
        return []
    out = [cell_sentence(m)]  # its key names the MLP
    if c.bound == "compute" and m.bound != "compute":
        out.append("The CNN's CPU step is compute-bound and the MLP's is not: a device with more arithmetic "
                   "throughput has more of the CNN's step to speed up.")
    return out


def write(doc: Document, inputs: Inputs) -> None:
    reason, evidence = missing(inputs, "cnn"), bench_lines(inputs, "cnn") + _contrast(inputs)
    if reason and not evidence:
        return
    doc.h2("Q9. CNN on the CPU vs the GPU, and how it differs from the MLP")
    doc.p(not_answered(reason, "What limits the CNN, and the MLP beside it") if reason
          else comparison(inputs, "cnn") + (" What limits each CNN cell, measured by the bench:" if evidence else ""))
    doc.bullets(evidence)


SECTION = Section(write, "Q9", lambda inputs: missing(inputs, "cnn"))

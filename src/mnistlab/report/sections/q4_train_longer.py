"""Q4: should the MLP train longer, or is it already too long? One rule over its validation curve (runs.TrainLonger)."""

from __future__ import annotations

from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import PATIENCE, TRAIN_LONGER_HEADERS, train_longer
from mnistlab.report.sections.mlp_cpu import missing, mlp_run
from mnistlab.report.sections.section import Section


def sentence(inputs: Inputs) -> str:
    mlp = mlp_run(inputs)
    assert mlp is not None  # a Section's sentence is called only where its missing() is None
    return train_longer(mlp).answer()


def write(doc: Document, inputs: Inputs) -> None:
    mlp = mlp_run(inputs)
    if mlp is None:
        return
    t = train_longer(mlp)
    doc.h2("Q4. Should the MLP train longer, or is it already too long?")
    doc.table(TRAIN_LONGER_HEADERS, t.evidence())
    doc.p(f"{t.answer()} The rule is the trainer's: mnistlab train --early-stop {PATIENCE}.")


SECTION = Section(write, "Q4", missing, order=70, sentence=sentence, ask="Train longer, or are 20 epochs too long?")

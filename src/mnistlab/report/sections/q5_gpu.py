"""Q5: training and testing on the GPU, from a GPU run of the MLP."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.gpu_runs("mlp") else inputs.no_gpu_run("mlp")


def sentence(inputs: Inputs) -> str:
    g = inputs.gpu_runs("mlp")[0]
    t, test = epoch_timing(g.metrics()), g.test()
    steady = f"a steady-state epoch trained in {t.spread.median:.2f} s" if t.steady_s else "no steady-state epoch yet"
    return (
        f"The same train and test loops, with the model and each batch moved by .to(device): on "
        f"{g.env().get('device')} {steady}" + (f", test accuracy {test['accuracy']:.2%}." if test else ".")
    )


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    g = inputs.gpu_runs("mlp")[0]
    doc.h2("Q5. Training and testing on the GPU")
    run_section(doc, g, inputs.figs)
    doc.p(sentence(inputs) + f" ({g.name}: mnistlab train --device cuda; {epoch_timing(g.metrics()).words(False)}.)")


SECTION = Section(write, "Q5", missing, order=80, sentence=sentence, ask="Train and test the MLP on the GPU")

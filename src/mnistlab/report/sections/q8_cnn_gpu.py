"""Q8: the CNN on the GPU."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.gpu_runs("cnn") else inputs.no_gpu_run("cnn")


def sentence(inputs: Inputs) -> str:
    g = inputs.gpu_runs("cnn")[0]
    t, test = epoch_timing(g.metrics()), g.test()
    steady = (
        f"a steady-state epoch trained in {t.spread.median:.2f} s"
        if t.steady_s
        else f"its first epoch trained in {t.cold_s[0]:.2f} s"
    )
    return f"On {g.env().get('device')} {steady}" + (f"; test accuracy {test['accuracy']:.2%}." if test else ".")


def write(doc: Document, inputs: Inputs) -> None:
    if missing(inputs):
        return
    g = inputs.gpu_runs("cnn")[0]
    doc.h2("Q8. The CNN on the GPU")
    run_section(doc, g, inputs.figs)
    doc.p(f"{g.name}: {epoch_timing(g.metrics()).words(False)}.")


SECTION = Section(write, "Q8", missing, order=110, sentence=sentence, ask="Train the CNN on the GPU")

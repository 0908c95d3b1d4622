"""Q7: the CNN has fewer parameters; how does it train on the CPU?"""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.measure.profiling import profile_model
from mnistlab.report.document import Document, percent, plural
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import capped, run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    return None if inputs.cpu_run("cnn") else "no CPU run of the CNN in these directories"


def write(doc: Document, inputs: Inputs) -> None:
    cnn = inputs.cpu_run("cnn")
    if cnn is None:
        return
    rows, test, cap = cnn.metrics(), cnn.test(), capped(cnn)
    mlp, cnn_p = profile_model("mlp", 1), profile_model("cnn", 1)
    fewer = 1 - cnn_p.parameters / mlp.parameters
    doc.h2("Q7. The CNN: fewer parameters; how does it train on the CPU?")
    doc.p(f"Answer: the CNN has {cnn_p.parameters:,} parameters, {percent(abs(fewer))} "
          f"{'fewer' if fewer > 0 else 'more'} than the MLP's {mlp.parameters:,}, yet one sample's forward pass "
          f"needs {cnn_p.macs:,} MACs, {cnn_p.macs / mlp.macs:.0f}x the MLP's. {plural(len(rows), 'epoch')} on the CPU"
          + (f" ({cap} steps each)" if cap else "") + f": {epoch_timing(rows).words()}"
          + (f"; test accuracy {test['accuracy']:.2%}" if test else "") + ".")
    run_section(doc, cnn, inputs.figs)


SECTION = Section(write, "Q7", missing, order=100)

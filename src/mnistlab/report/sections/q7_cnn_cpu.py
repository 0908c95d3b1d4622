"""Q7: the CNN has fewer parameters; how does it train on the CPU?"""

from __future__ import annotations

import statistics

from mnistlab.core.words import percent, plural
from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.lab_state import no_run
from mnistlab.report.runs import capped, run_section
from mnistlab.report.sections.section import Section


def missing(inputs: Inputs) -> str | None:
    if inputs.cpu_run("cnn"):
        return None
    return no_run(inputs, "cnn", cpu=True) or "no CPU run of the CNN in these directories"


def _step_ms(rows: list[dict[str, float]]) -> float | None:
    t = epoch_timing(rows)
    steps = t.steady_step_s or [r["train_seconds"] / r["steps"] for r in rows if r.get("steps")]
    return statistics.median(steps) * 1e3 if steps else None


def sentence(inputs: Inputs) -> str:
    cnn, mlp = inputs.cpu_run("cnn"), inputs.cpu_run("mlp")
    assert cnn is not None  # a Section's sentence is called only where its missing() is None
    rows, test, cap = cnn.metrics(), cnn.test(), capped(cnn)
    m, c = inputs.profile("mlp", 1), inputs.profile("cnn", 1)
    fewer = 1 - c.parameters / m.parameters
    cnn_ms, mlp_ms = _step_ms(rows), _step_ms(mlp.metrics()) if mlp else None
    step = f"; a training step takes {cnn_ms:.1f} ms on this CPU" if cnn_ms else ""
    step += f", {cnn_ms / mlp_ms:.0f}x the MLP's" if cnn_ms and mlp_ms else ""
    epochs = plural(len(rows), "epoch") + (f" of {int(rows[-1]['steps'])} steps" if cap else "")  # capped: as run
    return (
        f"The CNN has {percent(abs(fewer))} {'fewer' if fewer > 0 else 'more'} parameters than the MLP but "
        f"{c.macs / m.macs:.0f}x its MACs per image{step}"
        + (f"; after {epochs} its test accuracy is {test['accuracy']:.2%}." if test else ".")
    )


def write(doc: Document, inputs: Inputs) -> None:
    cnn = inputs.cpu_run("cnn")
    if cnn is None:
        return
    doc.h2("Q7. The CNN: fewer parameters; how does it train on the CPU?")
    run_section(doc, cnn, inputs.figs)
    doc.p(
        f"{sentence(inputs)} Each convolution weight is reused at every position of the image: few parameters, "
        f"much arithmetic."
    )


SECTION = Section(
    write,
    "Q7",
    missing,
    order=100,
    sentence=sentence,
    ask="The CNN has fewer parameters: how does it train on the CPU?",
)

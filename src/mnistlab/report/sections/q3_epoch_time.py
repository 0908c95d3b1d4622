"""Q3 (the notebook's unnumbered question between Q2 and Q4): time per epoch, and training for more epochs."""

from __future__ import annotations

from mnistlab.core.words import plural
from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.plots import plot_epoch_times
from mnistlab.report.runs import run_section
from mnistlab.report.sections.how_to_read import HOW
from mnistlab.report.sections.mlp_cpu import first_training, missing, mlp_run
from mnistlab.report.sections.section import Section


def sentence(inputs: Inputs) -> str:
    mlp = mlp_run(inputs)
    assert mlp is not None  # a Section's sentence is called only where its missing() is None
    rows, t, test = mlp.metrics(), epoch_timing(mlp.metrics()), mlp.test()
    more = rows[len(first_training(inputs, mlp)) :]
    first = ", ".join(f"{s:.2f} s" for s in t.cold_s)
    said = (
        f"A steady-state epoch trains in {t.spread.median:.2f} s here (median of {plural(t.spread.n, 'epoch')}; "
        f"first epoch of each session {first})"
        if t.steady_s
        else f"Each epoch was the first of its session ({first})"
    )
    if more:
        took = sum(x["epoch_seconds"] for x in more)
        said += f"; the {plural(len(more), 'more epoch')} took {took:.1f} s with validation"
    return said + (f", and the test set {test['seconds']:.2f} s." if test else ".")


def write(doc: Document, inputs: Inputs) -> None:
    mlp = mlp_run(inputs)
    if mlp is None:
        return
    t = epoch_timing(mlp.metrics())
    doc.h2("Q3. Time per epoch, and training for more epochs (the notebook's unnumbered question between Q2 and Q4)")
    f = plot_epoch_times([mlp], inputs.figs / f"{mlp.name}-epoch-times.png", title=f"{mlp.name}: time per epoch")
    doc.image(
        f, f"{mlp.name}: training seconds per epoch" + ("; crossed: the machine was busy" if t.busy_epochs else "")
    )
    run_section(doc, mlp, inputs.figs)
    doc.p(sentence(inputs) + " (", HOW, ")")


SECTION = Section(write, "Q3", missing, order=60, sentence=sentence, ask="How long is an epoch? Train 10 more epochs")

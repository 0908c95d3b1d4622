"""Q3 (the notebook's unnumbered question between Q2 and Q4): time per epoch, and training for more epochs."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document, plural
from mnistlab.report.inputs import Inputs
from mnistlab.report.plots import plot_epoch_times
from mnistlab.report.runs import run_section
from mnistlab.report.sections.mlp_cpu import first_session, missing, mlp_run
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    mlp = mlp_run(inputs)
    if mlp is None:
        return
    rows = mlp.metrics()
    n1 = len(first_session(mlp))
    more = len(rows) - n1
    t, test = epoch_timing(rows), mlp.test()
    doc.h2("Q3. Time per epoch, and training for more epochs (the notebook's unnumbered question between Q2 and Q4)")
    doc.p(f"Answer: {t.words()}" + (f"; the run was resumed for {plural(more, 'more epoch')}, which took "
                                    f"{sum(x['epoch_seconds'] for x in rows[n1:]):.2f} s with validation"
                                    if more else "")
          + (f"; the test set took {test['seconds']:.2f} s (accuracy {test['accuracy']:.2%})" if test else "")
          + ". A mean over all epochs would mix each session's first epoch into the steady state, so it is not shown.")
    f = plot_epoch_times([mlp], inputs.figs / f"{mlp.name}-epoch-times.png", title=f"{mlp.name}: time per epoch")
    doc.image(f, f"{mlp.name}: training seconds per epoch; circled: the first epoch of each session"
                 + ("; crossed: measured while the machine was busy" if t.busy_epochs else "")
                 + "; dashed: steady-state median, band: its min\u2013max"
                 + ("; dotted: resumed here" if more else ""))
    run_section(doc, mlp, inputs.figs)


SECTION = Section(write, "Q3", missing, order=60)

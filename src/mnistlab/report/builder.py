"""The lab report, rebuilt from result directories alone: report.md and a self-contained report.html.

Every number in it is read from the runs and typed results (report/inputs.py) or computed from the
model code (parameter and FLOP counts); each section is one module in report/sections/, and this
builder only loops over them. A sweep folder gets its own report (its trials and objective)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mnistlab.core.atomicfile import make_folder
from mnistlab.core.writer import FILES, Writer
from mnistlab.measure.gpus import DEFAULT_GPU
from mnistlab.measure.gpus import gpu as gpu_row
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs, read_inputs
from mnistlab.report.runs import config
from mnistlab.report.sections import questions, sections

FIGURES = "figures"


def questions_line(inputs: Inputs) -> str:
    """Which of the notebook's questions this report answers (by measurement, or by a labelled prediction),
    and why each other one is not, grouped by reason."""
    answered, predicted, unanswered = [], [], {}
    for s in questions():
        reason = s.missing(inputs)
        if reason is not None:
            unanswered.setdefault(reason, []).append(s.question)
        else:
            answered.append(s.question)
            predicted += [s.question] if s.predicted(inputs) else []
    if answered:
        said = f"This report answers {', '.join(answered)} of the course notebook's questions (its own numbering)"
        if predicted:
            said += (f"; {', '.join(predicted)} by a prediction for the {inputs.gpu.name} from what was measured "
                     f"here, not by a measurement on a GPU")
    else:
        said = "This report answers none of the course notebook's questions"
    if not unanswered:
        return said + "."
    return said + "; not answered: " + "; ".join(f"{', '.join(qs)}: {why}" for why, qs in unanswered.items()) + "."


def _intro(doc: Document, inputs: Inputs) -> None:
    if inputs.quick:
        doc.p("This was a quick run (mnistlab lab --quick): fewer epochs and a step limit for the CNN on the CPU "
              "(its epochs are labelled with their step count in the tables), so accuracies are below what the "
              "full plan reaches. Run mnistlab lab for the full plan.")
    if inputs.unfinished:
        doc.p("Runs with no finished epoch yet (left out): " + ", ".join(r.name for r in inputs.unfinished) + ".")
    doc.p(questions_line(inputs))
    trained_on = sorted({str(config(r).get("dataset")) for r in inputs.runs})
    if len(trained_on) > 1:  # a comparison across datasets compares the data as much as the models
        doc.p(f"These runs were trained on {len(trained_on)} different datasets ({', '.join(trained_on)}): where "
              f"this report compares runs of different datasets, their numbers differ by the data as well as by "
              f"the model and the device.")
    if inputs.runs:
        doc.p("Every time is for the machine that ran it. The first epoch of each training session is reported "
              "apart from the steady state, and called cold only where the session's warm-up was timed apart.")


def build_report(paths: list[Path], out_dir: Path | None = None, gpu: str = DEFAULT_GPU,
                 writer: Writer = FILES) -> tuple[Path, Path]:
    """Write report.md and report.html, with their figures folder, into `out_dir`: by default a lab or
    sweep directory itself (the report's home), else the current directory (a reader writes into no run).
    `gpu`: the row of measure/gpus.py's table whose step time Q6 and Q9 predict."""
    paths = [Path(p).absolute() for p in paths]  # fixed: a model's code run for its counts may chdir
    row = gpu_row(gpu)
    inputs = replace(read_inputs(paths), gpu=row)
    home = inputs.lab is not None or inputs.sweep is not None
    out_dir = Path(out_dir or (inputs.root if home else Path.cwd())).absolute()
    inputs = replace(inputs, figs=out_dir / FIGURES)
    make_folder(inputs.figs)  # never through a link planted there (core/atomicfile.py)
    if inputs.sweep is not None:
        doc = Document(f"mnistlab sweep {inputs.sweep[0]['study']}")
        parts = sections("sweep")
    else:
        doc = Document("mnistlab report" + (" (quick run)" if inputs.quick else ""))
        _intro(doc, inputs)
        parts = sections()
    for section in parts:
        section.write(doc, inputs)
    md, page = out_dir / "report.md", out_dir / "report.html"
    writer.text(md, doc.to_markdown(out_dir))
    writer.text(page, doc.to_html())
    return md, page

"""The lab report, rebuilt from result directories alone: report.md and a self-contained report.html.

It opens with the answer sheet (the machine, the run's stability said once, each question's one-sentence
answer), then the notebook's printed figures beside ours, then a section per question, figure and table
first; every caveat is said once, in "How to read this".

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
from mnistlab.report.inputs import read_inputs
from mnistlab.report.sections import sections

FIGURES = "figures"


def build_report(
    paths: list[Path], out_dir: Path | None = None, gpu: str = DEFAULT_GPU, writer: Writer = FILES
) -> tuple[Path, Path]:
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
        doc = Document(
            "mnistlab report" + (" (quick run)" if inputs.quick else "") + ": the notebook's questions, answered"
        )
        parts = sections()  # the answer sheet first (report/sections/answers.py)
    for section in parts:
        section.write(doc, inputs)
    md, page = out_dir / "report.md", out_dir / "report.html"
    writer.text(md, doc.to_markdown(out_dir))
    writer.text(page, doc.to_html())
    return md, page

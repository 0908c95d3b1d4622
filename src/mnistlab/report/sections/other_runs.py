"""Runs that no question shows (more devices, your own models, repeats), each with its table and figure."""

from __future__ import annotations

from mnistlab.measure.epochs import epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import run_section
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    shown = {
        r.name
        for r in [
            inputs.cpu_run("mlp"),
            inputs.cpu_run("cnn"),
            *inputs.gpu_runs("mlp")[:1],
            *inputs.gpu_runs("cnn")[:1],
        ]
        if r
    }
    others = [r for r in inputs.runs if r.name not in shown]
    if not others:
        return
    doc.h2("Other runs")
    for r in others:
        run_section(doc, r, inputs.figs)
        doc.p(f"{r.name}: {epoch_timing(r.metrics()).words(False)}.")


SECTION = Section(write, order=130)

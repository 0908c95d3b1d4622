"""Observations: every sentence computed from the runs' numbers and the bench's judgements."""

from __future__ import annotations

from mnistlab.measure.bench import observations as bench_observations
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.runs import config, device_comparisons, training_observations
from mnistlab.report.sections.section import Section


def write(doc: Document, inputs: Inputs) -> None:
    runs = inputs.runs
    notes = [n for r in runs if config(r)["model"] == "mlp" for n in training_observations(r)]
    notes += [n for r in runs if config(r)["model"] != "mlp" for n in training_observations(r)]
    notes += device_comparisons(runs)
    notes += bench_observations(inputs.bench) if inputs.bench else []
    if notes:
        doc.h2("Observations")
        doc.bullets(notes)


SECTION = Section(write, order=190)

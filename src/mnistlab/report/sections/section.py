"""A report section: what it writes, what it reads, where it goes, and for a notebook question, why it
cannot be answered. A section module defines `SECTION = Section(...)`; report/sections/__init__.py finds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mnistlab.core.schema import Result
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs


def _nothing(inputs: Inputs) -> str | None:
    return None


def _never(inputs: Inputs) -> bool:
    return False


@dataclass(frozen=True)
class Section:
    # writes the section into the document, or nothing when its inputs are absent
    write: Callable[[Document, Inputs], None]
    question: str | None = None  # "Q5": one of the notebook's questions, listed in the report's opening line
    # why the question cannot be answered from these inputs (the absent input, never a guessed cause); None: it can
    missing: Callable[[Inputs], str | None] = _nothing
    # True when the question is answered by a prediction (measure/prediction.py), not by a measurement
    predicted: Callable[[Inputs], bool] = _never
    order: float = 1000  # its place in the report (the built-in sections are 10, 20, ... 190)
    # the result type it reads (a class with FILE and from_dict): report/inputs.py reads every folder that holds
    # one into `inputs.results_of(type)`
    reads: type[Result] | None = None
    report: str = "lab"  # "lab": the report of labs, runs and measurements; "sweep": a sweep folder's own
    # a question's answer in one sentence, for the answer sheet (report/sections/answers.py); called only where
    # `missing` is None
    sentence: Callable[[Inputs], str | None] = _nothing
    ask: str = ""  # a question's words, short, as the answer sheet lists it ("What are the sample and the label?")

"""The report's sections, found here: every module of this package that defines `SECTION`, in `order`.

A new section (a new measurement's) is a new module here, or, from outside mnistlab, `register(section)`:
nothing else lists it. `QUESTIONS` are those that answer one of the notebook's questions.
"""

from __future__ import annotations

import importlib
import pkgutil

from mnistlab.core.schema import Result
from mnistlab.report.sections.section import Section

_REGISTERED: list[Section] = []


def register(section: Section) -> Section:
    """Add a section defined outside this package (a plugin, a test's toy measurement)."""
    _REGISTERED.append(section)
    return section


def all_sections() -> list[Section]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        section = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SECTION", None)
        if isinstance(section, Section):
            found.append(section)
    return sorted([*found, *_REGISTERED], key=lambda s: s.order)


def sections(report: str = "lab") -> list[Section]:
    return [s for s in all_sections() if s.report == report]


def questions() -> list[Section]:
    return [s for s in sections() if s.question]


def result_types() -> list[type[Result]]:
    """The result types some section reads (each marks its folders by its FILE)."""
    return list(dict.fromkeys(s.reads for s in all_sections() if s.reads is not None))

"""Jobs: the only code that fetches data, creates output folders and writes result files.

The command line parses its arguments and calls one job; `lab` composes jobs; a notebook calls the same
functions (`mnistlab.evaluate_run(...)`). A job takes plain values, checks what it can before any work (a
bad model name, a device that is not there), writes into one folder (jobs/folder.py: its lifecycle and
status.json), and returns what it measured together with where it wrote it. Printing is the caller's: a
job only logs progress.

Each job module lists its public functions in `__all__`; they are found here (and as `mnistlab.NAME`)
without a list to keep: adding a job is adding its module.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any


@cache
def public_names() -> dict[str, str]:
    """Every job module's `__all__`: name -> module."""
    names: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        names.update(dict.fromkeys(getattr(module, "__all__", ()), module.__name__))
    return names


def __getattr__(name: str) -> Any:
    module = public_names().get(name) if not name.startswith("_") else None
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

"""Progress lines through the standard `logging` module: the library logs, the application prints.

Every module reports what it is doing on its own logger under `mnistlab` (`mnistlab.jobs.train`,
`mnistlab.data.fetching`, ...): `lines(__name__)` is the `log` callable that the jobs and measurements
take by default (INFO, one line per call). Who prints them:

- the command line: `printing(stream, level)` for the command's duration (cli.py: stderr, or stdout where a
  command's lines are its answer; WARNING with `--quiet`);
- your own logging configuration, where there is one (`logging.basicConfig(...)`, a handler on `mnistlab`):
  records propagate to it as to any library's;
- otherwise (a notebook, a script that configured nothing) the fallback below writes them to stdout, as
  `print` did, so that a notebook still shows each epoch. `logging.getLogger("mnistlab").setLevel(
  logging.WARNING)` silences them.

A line is written through tqdm (`tqdm.write`), so that a progress bar on the same terminal is cleared and
drawn again below it (core/progress.py). A stream that fails (a closed pipe) raises to the caller, as `print`
does, instead of logging's own traceback on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

ROOT = "mnistlab"


def lines(name: str) -> Callable[[str], None]:
    """The default `log` of the module `name` (its `__name__`): each call logs one INFO line there."""
    return logging.getLogger(name).info


class _Lines(logging.Handler):
    """Each record's message as one line on `stream` (None: sys.stdout at the time of the line)."""

    def __init__(self, stream: TextIO | None = None, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:  # no try/except: a closed pipe is the caller's to see
        from tqdm.auto import tqdm

        tqdm.write(record.getMessage(), file=self.stream or sys.stdout)


class _Fallback(_Lines):
    """Prints only where nobody else does: no command line handler, and no logging configured (the root
    logger has no handler). Configured logging receives the records by propagation instead."""

    def emit(self, record: logging.LogRecord) -> None:
        if _printing or logging.getLogger().handlers:
            return
        super().emit(record)


_printing: list[_Lines] = []  # the command line's handlers, while a command runs
_root = logging.getLogger(ROOT)
if not any(isinstance(h, _Fallback) for h in _root.handlers):  # once, even if this module is reloaded
    _root.addHandler(_Fallback())
if _root.level == logging.NOTSET:
    _root.setLevel(logging.INFO)  # progress lines are INFO: below the root's default WARNING they would vanish


@contextlib.contextmanager
def printing(stream: TextIO, level: int = logging.INFO) -> Iterator[None]:
    """While the block runs, mnistlab's lines at `level` and above go to `stream` and nowhere else (not also to
    a root handler of the program that called `mnistlab.cli.main`); afterwards everything is as it was."""
    handler = _Lines(stream, level)
    root = logging.getLogger(ROOT)
    propagate = root.propagate
    root.addHandler(handler)
    root.propagate = False
    _printing.append(handler)
    try:
        yield
    finally:
        _printing.remove(handler)
        root.removeHandler(handler)
        root.propagate = propagate if not _printing else False

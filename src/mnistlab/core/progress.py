"""Progress bars with the time left (tqdm), on stderr: a download, a bench's cells, a speedrun's seeds, a
sweep's trials, a training epoch.

A bar shows only where it redraws in place: a terminal, or a notebook's widget (tqdm.auto, with
ipywidgets installed). A pipe, a log file, or a notebook without ipywidgets (where tqdm.auto falls back to
the text bar) would get every redraw, '\\r' after '\\r', so there no bar is drawn and the log lines are the
progress. `--no-progress` turns every bar off for the command (`turned_off()`), as `progress=False` does
for a job called from Python. Updating a bar happens between timed blocks, never inside one. tqdm is
imported when a bar is made, not with this module: `mnistlab --help` imports neither it nor torch.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_off = 0  # blocks that turned the bars off (the command line's --no-progress)


@contextlib.contextmanager
def turned_off(off: bool = True) -> Iterator[None]:
    """No bar while the block runs (when `off`)."""
    global _off
    _off += int(off)
    try:
        yield
    finally:
        _off -= int(off)


def redraws_in_place(bar_class: type | None = None) -> bool:
    """A terminal on stderr redraws a bar in place, and a notebook shows tqdm.auto's widget (`bar_class`:
    the tqdm class in use, tqdm.auto's by default)."""
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm as widget_bar

    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return issubclass(bar_class or tqdm, widget_bar)


def shown(bar_class: type | None = None) -> bool:
    """Whether a bar would be drawn now: not turned off, and somewhere that redraws it in place."""
    return not _off and redraws_in_place(bar_class)


def bar(total: float | None, desc: str, unit: str = "it", *, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar (tqdm.auto's: a widget in a notebook) on stderr, with the time left, that goes away when
    it closes; a disabled one, which draws nothing, where no bar is shown (see the module's docstring)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, leave=False, disable=not (enabled and shown()), dynamic_ncols=True, **options
    )


class Reading:
    """A binary stream whose reads advance `progress` (a bar) by the bytes read: a download's bar."""

    def __init__(self, stream: Any, progress: Any) -> None:
        self.stream, self.progress = stream, progress

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.progress.update(len(data))
        return data

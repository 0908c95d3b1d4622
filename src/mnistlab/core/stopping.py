"""Ctrl-C and SIGTERM during training: both stop the run cleanly, never in the middle of a checkpoint.

A service manager, `timeout`, a batch scheduler or `docker stop` sends SIGTERM; without a handler
the process died with status.json still saying "running". While a StopRequests is active, SIGINT
raises KeyboardInterrupt and SIGTERM raises Terminated (a KeyboardInterrupt, so one `except`
handles both); inside `deferred()` a signal is held until the block ends, so what the run says it
saved is exactly what its files hold.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop like Ctrl-C (the run stays resumable); the CLI exits with 143."""


# Once a command's job has recorded its final state, a stop request changes nothing any more: it would make
# the exit code disagree with status.json ("completed" and exit 130). From `hold()` to `release()` a signal
# that a StopRequests receives is kept, not raised; the command line releases at its end and says so.
_held = False
_late: int | None = None


def hold() -> None:
    """From now until `release()`, a stop request is kept, not raised (the job's final state is recorded)."""
    global _held
    _held = True


def release() -> int | None:
    """End a `hold()`; the signal that arrived during it, if any."""
    global _held, _late
    late, _held, _late = _late, False, None
    return late


class StopRequests:
    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # Python allows handlers only there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if _held:
            _keep_late(signum)
        elif self._depth:
            self._pending = signum
        else:
            _raise(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a stop request does not cut short: the request takes effect when it ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending is not None:
            signum, self._pending = self._pending, None
            if _held:  # the block recorded the job's final state: the request comes too late to change it
                _keep_late(signum)
                return
            _raise(signum)


def _keep_late(signum: int) -> None:
    global _late
    _late = signum


def _raise(signum: int) -> None:
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

"""The one way mnistlab writes a file: a `Writer`, passed explicitly to the code that writes.

Every write is atomic (core.atomicfile: a temporary name, fsync, rename), so a killed process leaves
the old version of a file or the new one, never half of one. A command run by one process writes its
files itself: `FILES`. In a data-parallel job (torchrun, WORLD_SIZE > 1) every process computes the same
state, and rank 0 alone owns the output folder: it gets `FILES`, the other ranks get `SILENT`, and
nothing else decides. `RANK` outside a real process group changes nothing (core.distributed.world).

status.json is written by `Writer.status` alone, in one schema (STATUS_SCHEMA in core/rundir.py):
the state, the job, a message for a failure, and the job's own fields.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.distributed import World

STATUS = "status.json"


def json_bytes(obj: Any) -> bytes:
    # allow_nan=False: a NaN or inf would make a file that strict JSON parsers (and mnistlab) refuse
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()


def strict_json(obj: Any) -> Any:
    """`obj` with every NaN or infinity as null: what a command prints as JSON stays strict JSON (a model of
    one's own can make a loss infinite; Python's json would print `NaN`, which strict parsers refuse)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def json_text(obj: Any) -> str:
    """JSON for stdout (`--json`): strict (see strict_json), indented."""
    return json.dumps(strict_json(obj), indent=2, allow_nan=False)


def csv_bytes(fields: list[str], rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


@dataclass(frozen=True)
class Writer:
    writes: bool

    def bytes(
        self, path: Path, data: bytes, verify: Callable[[Path], None] | None = None, suffix: str = ".tmp"
    ) -> None:
        if self.writes:
            write_atomic(path, data, verify, suffix=suffix)

    def text(self, path: Path, text: str) -> None:
        self.bytes(path, text.encode())

    def json(self, path: Path, obj: Any) -> None:
        self.bytes(path, json_bytes(obj))

    def csv(self, path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
        self.bytes(path, csv_bytes(fields, rows))

    def status(self, folder: Path, state: str, job: str, message: str | None = None, **fields: Any) -> None:
        """THE writer of status.json: {state, job, message (a failure's line), the job's own fields}."""
        self.json(
            Path(folder) / STATUS,
            {"state": state, "job": job, **({"message": message} if message is not None else {}), **fields},
        )


FILES = Writer(writes=True)
SILENT = Writer(writes=False)  # a data-parallel rank other than 0: it computes, rank 0 writes


def writer_for(w: World) -> Writer:
    return FILES if w.is_main else SILENT


@dataclass
class JobFolder:
    """An output folder while its job runs: where it is (an absolute path, fixed when the job starts, so
    that a chdir by a user's model cannot move its writes), who writes, and the job's status fields so far."""

    path: Path
    writer: Writer
    job: str
    fields: dict[str, Any] = field(default_factory=dict)
    ends_as: str = "completed"  # the final state if the job returns: a sweep's pruner makes it "pruned"
    stops: Any = None  # the job's core.stopping.StopRequests while it runs

    def __post_init__(self) -> None:
        self.path = Path(self.path).absolute()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    def progress(self, **fields: Any) -> None:
        """Still running: status.json with the fields so far (merged with these)."""
        self.fields.update(fields)
        self.writer.status(self.path, "running", self.job, **self.fields)

    def save(self, result: Any, text: str | None = None, text_name: str | None = None) -> None:
        """A result into the folder: its own file (its FILE, as JSON), and its text under `text_name`."""
        self.writer.json(self / result.FILE, result.to_dict())
        if text is not None and text_name is not None:
            self.writer.text(self / text_name, text + "\n")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that Ctrl-C or SIGTERM does not cut short: the stop takes effect when it ends."""
        with self.stops.deferred() if self.stops is not None else contextlib.nullcontext():
            yield

    def end(self, state: str, message: str | None = None) -> None:
        self.writer.status(self.path, state, self.job, message, **self.fields)

"""Who writes a job's files, passed explicitly to the code that writes them.

A command run by one process writes its files itself: `FILES`. In a data-parallel job (torchrun,
WORLD_SIZE > 1) every process computes the same state, and rank 0 alone owns the run directory:
it gets `FILES`, the other ranks get `SILENT`, and nothing else decides. `RANK` outside a real
process group changes nothing (core.distributed.world).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.distributed import World


@dataclass(frozen=True)
class Writer:
    writes: bool

    def bytes(self, path: Path, data: bytes, verify: Callable[[Path], None] | None = None) -> None:
        if self.writes:
            write_atomic(path, data, verify)

    def json(self, path: Path, obj: Any) -> None:
        from mnistlab.core.rundir import json_bytes

        self.bytes(path, json_bytes(obj))

    def csv(self, path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
        from mnistlab.core.rundir import csv_bytes

        self.bytes(path, csv_bytes(fields, rows))


FILES = Writer(writes=True)
SILENT = Writer(writes=False)  # a data-parallel rank other than 0: it computes, rank 0 writes


def writer_for(w: World) -> Writer:
    return FILES if w.is_main else SILENT

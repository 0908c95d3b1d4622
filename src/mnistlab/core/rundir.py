"""The run directory: the only place a run writes, and everything needed to rebuild
its plots and report without training again. Reading one never writes: `open_run` and `RunDir`
read and validate (core/schema.py); jobs (mnistlab.jobs) create, lock and write.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mnistlab.core.atomicfile import leftover_of
from mnistlab.core.errors import CheckpointError, MnistlabError, ResultFileError
from mnistlab.core.lock import LOCK_FILE
from mnistlab.core.richdisplay import html_table
from mnistlab.core.schema import LARGE, Range, check, check_rows, json_kind, one_of

CONFIG, ENV, METRICS, STEPS, TEST = "config.json", "env.json", "metrics.csv", "steps.csv", "test.json"
LAST, BEST, STATUS = "last.pt", "best.pt", "status.json"
RUN_FILES = (CONFIG, ENV, METRICS, STEPS, TEST, LAST, BEST, STATUS)  # written atomically (core/writer.py)
# what a reader may rely on in metrics.csv (and a checkpoint's history); the later columns are optional
REQUIRED_METRICS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "train_seconds",
    "val_seconds",
    "epoch_seconds",
    "samples_per_s",
    "steps",
    "global_step",
]
METRIC_FIELDS = [
    *REQUIRED_METRICS,
    "session",
    "load_1m",  # the load at the epoch's end
    "cpu_count",
    "warmup_s",  # the session's warm-up (in its first row)
    "threads",  # torch's intra-op threads in the epoch, chosen at its start (core.threads)
]
STEP_FIELDS = ["step", "epoch", "train_loss"]
# bounds on what a reader reads, so that plot and report stay bounded in time and memory
MAX_EPOCHS = 100_000  # rows of metrics.csv (and epochs a run may have)
MAX_STEP_ROWS = 1_000_000  # rows of steps.csv
MAX_FILE_BYTES = 64 * 2**20  # a JSON or CSV file (metrics.csv at MAX_EPOCHS rows is about 12 MiB)

_COUNT, _NUMBER = Range(0, 2**53, whole=True), Range(0, LARGE)  # sums over MAX_EPOCHS rows stay finite
_EPOCH, _THREADS = Range(1, MAX_EPOCHS, whole=True), Range(1, 2**20, whole=True)
METRIC_RANGES = {
    "epoch": _EPOCH,
    "train_loss": _NUMBER,
    "val_loss": _NUMBER,
    "val_accuracy": Range(0, 1),
    "train_seconds": _NUMBER,
    "val_seconds": _NUMBER,
    "epoch_seconds": _NUMBER,
    "samples_per_s": _NUMBER,
    "steps": _COUNT,
    "global_step": _COUNT,
    "session": _EPOCH,
    "load_1m": _NUMBER,
    "cpu_count": _THREADS,
    "warmup_s": _NUMBER,
    "threads": _THREADS,
}
STEP_RANGES = {"step": _COUNT, "epoch": _EPOCH, "train_loss": _NUMBER}
# a metrics row as a checkpoint's history holds it (JSON-like): the required columns, the others optional
METRIC_ROW = {k if k in REQUIRED_METRICS else f"{k}?": r for k, r in METRIC_RANGES.items()}
STEP_ROW = dict(STEP_RANGES)
# the states a status.json may hold: a job running, its final states (core/failures.py), and runs written
# before the one lifecycle ("finished")
STATES = ("running", "completed", "failed", "interrupted", "terminated", "diverged", "pruned", "finished")
STATUS_SCHEMA = {
    "state": one_of(STATES),
    "job?": "text",
    "message?": "text",
    "epochs_done?": "count",
    "best_epoch?": "count",
    "steps_done?": "count",
    "stopped_early?": "bool",
    "warmup_seconds?": "seconds",
}
TEST_SCHEMA = {
    "loss": "loss",
    "accuracy": "fraction",
    "correct": "count",
    "total": "positive count",
    "seconds": "seconds",
    "epoch?": "count",
    "checkpoint?": "text",
    "classes?": ["text"],
    "per_class_accuracy?": ["fraction"],
    "confusion?": [["count"]],
}
ENV_SCHEMA = {
    "torch": "text",
    "cuda_version": "text?",
    "numpy": "text",
    "python": "text",
    "mnistlab": "text",
    "cpu": "text",
    "cpu_count": "int?",
    "torch_threads": "int",
    "cuda_available": "bool",
    "cuda_devices": ["text"],
    "mps_available": "bool",
    "device?": "text",
}
RUN_ENV_SCHEMA = {k.rstrip("?") + "?": v for k, v in ENV_SCHEMA.items()}  # a run's env.json: typed, all optional


def open_regular(path: Path, what: str = "file") -> BinaryIO:
    """A file opened for reading, if it is a regular one (a link to one is fine). A FIFO, a device
    (/dev/zero) or a socket is refused before anything is read: it could block forever or never
    end. O_NONBLOCK, so that opening a FIFO does not wait for a writer; fstat, so the check is on
    what was opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ResultFileError(f"{path}: not found") from None
    except OSError as e:
        raise ResultFileError(f"{path}: cannot read ({e.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = (
            "a directory"
            if stat.S_ISDIR(mode)
            else "a FIFO"
            if stat.S_ISFIFO(mode)
            else ("a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        )
        raise ResultFileError(f"{path}: is {kind}, expected {what}; mnistlab reads only regular files")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes (see open_regular), at most `limit` of them: a larger file is refused."""
    with open_regular(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ResultFileError(
            f"{path}: larger than {limit / 2**20:g} MiB, more than {what} of mnistlab's can be; not read"
        )
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_bytes(path, "a JSON file").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ResultFileError(f"{path}: not valid JSON ({e})") from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (every file a run writes is one)."""
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise ResultFileError(f"{path}: expected a JSON object, found {json_kind(obj)}")
    return obj


def read_csv(path: Path, required: Sequence[str] = (), max_rows: int = MAX_EPOCHS) -> list[dict[str, float]]:
    """Rows with every value as a number (all our CSV columns are numeric); the `required`
    columns must be in the header, every row must have exactly the header's fields, and there
    may be at most `max_rows` rows (what a reader renders stays bounded)."""
    try:
        reader = csv.DictReader(io.StringIO(read_bytes(path, "a CSV file").decode("utf-8"), newline=""))
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ResultFileError(f"{path}: malformed CSV (missing column {', '.join(missing)})")
        rows: list[dict[str, float]] = []
        for line, row in enumerate(reader, start=2):
            if len(rows) == max_rows:
                raise ResultFileError(f"{path}: more than {max_rows:,} rows, more than mnistlab reads")
            if None in row or None in row.values():
                raise ResultFileError(f"{path}: malformed CSV (line {line} does not have {len(header)} fields)")
            try:  # an empty optional cell (an older row, no load average on this OS) is absent
                rows.append({k: float(v) for k, v in row.items() if v != "" or k in required})
            except ValueError as e:
                raise ResultFileError(f"{path}: malformed CSV (line {line}: {e})") from None
        return rows
    except (UnicodeDecodeError, csv.Error) as e:
        raise ResultFileError(f"{path}: malformed CSV ({e})") from None


def check_history(
    where: Path | str, rows: list[dict[str, float]], label: str = "line", first: int = 2
) -> list[dict[str, float]]:
    """Epoch rows in their order: row i is epoch i + 1 (a run writes them so; a reader never shows rows
    out of order as if they were a history)."""
    for i, row in enumerate(rows):
        if row["epoch"] != i + 1:
            raise ResultFileError(
                f"{where}: {label} {i + first}: epoch is {row['epoch']:g}, expected {i + 1} "
                f"(epochs must follow each other from 1)"
            )
    return rows


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> dict[str, Any]:
        """The raw object; training.config.load_run_config validates it as a TrainConfig."""
        return read_json_object(self.path / CONFIG)

    def metrics(self) -> list[dict[str, float]]:
        """metrics.csv's rows, checked (every known column in its range); [] before the first epoch."""
        path = self.path / METRICS
        return (
            check_history(path, check_rows(path, read_csv(path, REQUIRED_METRICS), METRIC_RANGES))
            if path.exists()
            else []
        )

    def steps(self) -> list[dict[str, float]]:
        path = self.path / STEPS
        return (
            check_rows(path, read_csv(path, STEP_FIELDS, max_rows=MAX_STEP_ROWS), STEP_RANGES) if path.exists() else []
        )

    def test(self) -> dict[str, Any] | None:
        """test.json, checked: every figure in its range, and no more correct answers than tests."""
        path = self.path / TEST
        if not path.exists():
            return None
        test = check(read_json_object(path), TEST_SCHEMA, str(path))
        if test["correct"] > test["total"]:
            raise ResultFileError(f"{path}: field 'correct': {test['correct']} is more than its total {test['total']}")
        return test

    def env(self) -> dict[str, Any]:
        path = self.path / ENV
        return check(read_json_object(path), RUN_ENV_SCHEMA, str(path)) if path.exists() else {}

    def status(self) -> dict[str, Any]:
        path = self.path / STATUS
        return check(read_json_object(path), STATUS_SCHEMA, str(path)) if path.exists() else {}

    def _repr_html_(self) -> str:
        """A notebook's view of the run: what it trained, how far, how well (a damaged file: its one line)."""
        try:
            rows = self._summary_rows()
        except MnistlabError as e:
            rows = [("problem", str(e))]
        return html_table(f"run {self.name}", [("folder", self.path), *rows])

    def _summary_rows(self) -> list[tuple[str, object]]:
        cfg, metrics, test = self.config(), self.metrics(), self.test()
        ran_on = self.env().get("device")  # what `auto` resolved to, once training started
        subset = f" (its first {cfg['subset']:,} samples)" if isinstance(cfg.get("subset"), int) else ""
        rows: list[tuple[str, object]] = [
            ("model", cfg.get("model")),
            ("dataset", f"{cfg.get('dataset')}{subset}"),
            ("device", ran_on or cfg.get("device")),
            ("state", self.status().get("state", "-")),
        ]
        if metrics:
            last = metrics[-1]
            rows += [
                ("epochs", f"{int(last['epoch'])} of {cfg.get('epochs')}"),
                (
                    "last epoch",
                    f"train loss {last['train_loss']:.4f}, validation loss {last['val_loss']:.4f}, "
                    f"validation accuracy {last['val_accuracy']:.2%}, {last['epoch_seconds']:.2f} s",
                ),
            ]
        if test and isinstance(test.get("accuracy"), (int, float)):
            rows.append(("test accuracy", f"{test['accuracy']:.2%}"))
        return rows


def open_run(path: str | os.PathLike) -> RunDir:
    """An existing run directory, or a clear error. Opening changes nothing: readers never write."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory")
    if (p / CONFIG).exists() and not (p / CONFIG).is_file():
        raise CheckpointError(f"{p / CONFIG}: is not a regular file; mnistlab reads only regular files")
    if not (p / CONFIG).is_file():
        hint = "; a run killed while starting can be started again with --run-dir" if only_leftovers(p) else ""
        raise CheckpointError(f"{p}: not a mnistlab run directory (no {CONFIG}){hint}")
    return RunDir(p)


def only_leftovers(p: Path) -> bool:
    """A folder that holds nothing but what a job killed while starting leaves: its lock, its status and
    the temporary files of its own writes (a user's file makes it a folder that is not ours to use)."""
    return all(f.name in (LOCK_FILE, STATUS) or leftover_of(f.name, names=RUN_FILES) for f in p.iterdir())

"""The run directory: the only place a run writes, and everything needed to rebuild
its plots and report without training again.

Every file is written to a temporary name and renamed, so a killed process leaves
either the old or the new version of a file, never half of one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mnistlab.core.atomicfile import leftover_of, write_atomic
from mnistlab.core.lock import LOCK_FILE
from mnistlab.core.errors import CheckpointError, MnistlabError, ResultFileError
from mnistlab.core.richdisplay import html_table

CONFIG, ENV, METRICS, STEPS, TEST = "config.json", "env.json", "metrics.csv", "steps.csv", "test.json"
LAST, BEST, STATUS = "last.pt", "best.pt", "status.json"
RUN_FILES = (CONFIG, ENV, METRICS, STEPS, TEST, LAST, BEST, STATUS)  # written by write_atomic
METRIC_FIELDS = ["epoch", "train_loss", "val_loss", "val_accuracy", "train_seconds", "val_seconds",
                 "epoch_seconds", "samples_per_s", "steps", "global_step", "session",
                 "load_1m", "cpu_count", "warmup_s",  # load at the epoch's end; the session's warm-up (its 1st row)
                 "threads"]  # torch's intra-op threads in the epoch, chosen at its start (core.threads)
STEP_FIELDS = ["step", "epoch", "train_loss"]
# what a reader may rely on in metrics.csv (and a checkpoint's history); later columns are optional
REQUIRED_METRICS = ["epoch", "train_loss", "val_loss", "val_accuracy", "train_seconds", "val_seconds",
                    "epoch_seconds", "samples_per_s", "steps", "global_step"]
# bounds on what a reader reads, so that plot and report stay bounded in time and memory
MAX_EPOCHS = 100_000  # rows of metrics.csv (and epochs a run may have)
MAX_STEP_ROWS = 1_000_000  # rows of steps.csv
MAX_FILE_BYTES = 64 * 2**20  # a JSON or CSV file (metrics.csv at MAX_EPOCHS rows is about 12 MiB)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def csv_bytes(fields: list[str], rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json_bytes(obj))


def write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    write_atomic(path, csv_bytes(fields, rows))


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
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else (
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ResultFileError(f"{path}: is {kind}, expected {what}; mnistlab reads only regular files")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, what: str = "file", limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes (see open_regular), at most `limit` of them: a larger file is refused."""
    with open_regular(path, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ResultFileError(f"{path}: larger than {limit / 2**20:g} MiB, more than {what} of mnistlab's can be; "
                              f"not read")
    return data


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_bytes(path, "a JSON file").decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ResultFileError(f"{path}: not valid JSON ({e})") from None


def json_kind(obj: Any) -> str:
    """The JSON name of a value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(obj), type(obj).__name__)


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
        rows = []
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


@dataclass(frozen=True)
class Range:
    """What a CSV column may hold: a finite number in [low, high], whole if `whole`."""

    low: float
    high: float
    whole: bool = False

    def problem(self, v: float) -> str | None:
        return None if self.holds(v) else f"must be {self.words()}, got {v!r}"

    def holds(self, v: float) -> bool:
        # the bounds first: they are finite (so nan and inf fail) and compare a 400-digit int exactly
        return self.low <= v <= self.high and math.isfinite(v) and (not self.whole or v == int(v))

    def words(self) -> str:
        return (f"a whole number in {int(self.low):,}..{int(self.high):,}" if self.whole
                else f"a number in [{self.low:g}, {self.high:g}]")


# float32's largest: no loss computed in float32 is larger, and sums over MAX_EPOCHS rows stay finite
_LARGE = 3.4e38
_COUNT, _NUMBER = Range(0, 2**53, whole=True), Range(0, _LARGE)
_EPOCH = Range(1, MAX_EPOCHS, whole=True)
METRIC_RANGES = {"epoch": _EPOCH, "train_loss": _NUMBER, "val_loss": _NUMBER, "val_accuracy": Range(0, 1),
                 "train_seconds": _NUMBER, "val_seconds": _NUMBER, "epoch_seconds": _NUMBER,
                 "samples_per_s": _NUMBER, "steps": _COUNT, "global_step": _COUNT, "session": _EPOCH,
                 "load_1m": _NUMBER, "cpu_count": Range(1, 2**20, whole=True), "warmup_s": _NUMBER,
                 "threads": Range(1, 2**20, whole=True)}
STEP_RANGES = {"step": _COUNT, "epoch": _EPOCH, "train_loss": _NUMBER}


def check_ranges(path: Path, rows: list[dict[str, float]], ranges: dict[str, Range]) -> list[dict[str, float]]:
    """The rows, if every value of a known column is in its range (so no reader shows inf, nan or a
    negative time as a fact, or fails on int(nan)); else a ResultFileError naming line and column."""
    for line, row in enumerate(rows, start=2):
        for column, value in row.items():
            problem = ranges[column].problem(value) if column in ranges else None
            if problem:
                raise ResultFileError(f"{path}: line {line}: {column} {problem}")
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
        """metrics.csv's rows, checked (read_csv, check_ranges); [] before the first epoch."""
        path = self.path / METRICS
        return check_ranges(path, read_csv(path, REQUIRED_METRICS), METRIC_RANGES) if path.exists() else []

    def steps(self) -> list[dict[str, float]]:
        path = self.path / STEPS
        rows = read_csv(path, STEP_FIELDS, max_rows=MAX_STEP_ROWS) if path.exists() else []
        return check_ranges(path, rows, STEP_RANGES)

    def test(self) -> dict[str, Any] | None:
        return read_json_object(self.path / TEST) if (self.path / TEST).exists() else None

    def env(self) -> dict[str, Any]:
        return read_json_object(self.path / ENV) if (self.path / ENV).exists() else {}

    def status(self) -> dict[str, Any]:
        return read_json_object(self.path / STATUS) if (self.path / STATUS).exists() else {}

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
        rows: list[tuple[str, object]] = [("model", cfg.get("model")), ("dataset", f"{cfg.get('dataset')}{subset}"),
                                          ("device", ran_on or cfg.get("device")),
                                          ("state", self.status().get("state", "-"))]
        if metrics:
            last = metrics[-1]
            rows += [("epochs", f"{int(last['epoch'])} of {cfg.get('epochs')}"),
                     ("last epoch", f"train loss {last['train_loss']:.4f}, validation loss {last['val_loss']:.4f}, "
                                    f"validation accuracy {last['val_accuracy']:.2%}, {last['epoch_seconds']:.2f} s")]
        if test and isinstance(test.get("accuracy"), (int, float)):
            rows.append(("test accuracy", f"{test['accuracy']:.2%}"))
        return rows


def open_run(path: str | os.PathLike) -> RunDir:
    """An existing run directory, or a clear error. Opening changes nothing: readers never write."""
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"{p}: no such run directory")
    if not (p / CONFIG).is_file():
        hint = "; a run killed while starting can be started again with --run-dir" if _only_leftovers(p) else ""
        raise CheckpointError(f"{p}: not a mnistlab run directory (no {CONFIG}){hint}")
    return RunDir(p)


def _only_leftovers(p: Path) -> bool:
    """A folder that holds nothing but what a run killed while starting leaves: its lock and the
    temporary files of its own writes (a user's file makes it a folder that is not ours to use)."""
    return all(f.name == LOCK_FILE or leftover_of(f.name, names=RUN_FILES) for f in p.iterdir())


def create_run_dir(explicit: str | os.PathLike | None, base: str | os.PathLike, stem: str, *,
                   option: str = "--out", resumable: bool = False) -> RunDir:
    """A new, empty run directory. An explicit path may exist only if it is empty; otherwise a
    fresh name under `base` (timestamp plus a random suffix, so two runs started in the same
    second, even in two processes, never share one). The caller locks it before cleaning it.
    `option` names the command's flag for the path, and `resumable` whether `--resume` can continue it."""
    if explicit is not None:
        p = Path(explicit)
        if p.exists() and not p.is_dir():
            raise CheckpointError(f"{p}: is a file, not a folder; choose another {option}")
        if p.exists() and not _only_leftovers(p):
            resume = f"use --resume {p} to continue it, or " if resumable else ""
            raise CheckpointError(f"{p}: already exists and is not empty; {resume}choose another {option}")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"{p}: cannot create run directory ({e.strerror})") from None
        return RunDir(p)
    base = Path(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"{base}: cannot create ({e.strerror})") from None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for _ in range(100):
        p = base / f"{stem}-{stamp}-{secrets.token_hex(3)}"
        try:
            p.mkdir()  # exclusive: fails if another process took the name
            return RunDir(p)
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(f"{p}: cannot create run directory ({e.strerror})") from None
    raise CheckpointError(f"{base}: could not find a free run directory name")

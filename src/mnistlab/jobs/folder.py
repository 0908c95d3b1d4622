"""A job's output folder and its lifecycle: the one place that creates, locks and ends an output folder.

A job takes plain values, checks what it can before any work (a bad model name, a device that is not
there), then gets its folder from `job_folder`: a new one (or, for `--resume`, an existing one, locked),
its Writer, and status.json saying `running`. Whatever ends the job, status.json ends in a final state
with the job's fields and, for a failure, its one line (core.failures.outcome), written while a second
signal waits. SIGTERM stops a job like Ctrl-C, so that it too is recorded.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import overload

from mnistlab.core import stopping
from mnistlab.core.atomicfile import remove_leftovers
from mnistlab.core.errors import CheckpointError, DataError, MnistlabError, first_line
from mnistlab.core.failures import outcome
from mnistlab.core.faults import kill_point
from mnistlab.core.lock import FolderLock
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RUN_FILES, only_leftovers
from mnistlab.core.stopping import StopRequests
from mnistlab.core.writer import FILES, JobFolder, Writer
from mnistlab.data.datasets import DatasetSpec, data_root, get_dataset
from mnistlab.data.fetching import fetch, verify_present

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["dataset", "job_folder"]

Log = Callable[[str], None]
PathLike = str | os.PathLike


def quiet(message: str) -> None:
    """A log that says nothing (a data-parallel rank other than 0, a sweep's trial)."""


@overload
def fixed(path: PathLike) -> Path: ...
@overload
def fixed(path: None) -> None: ...
def fixed(path: PathLike | None) -> Path | None:
    """A path given to a job, made absolute as the job starts: a user's model that changes the working
    directory later moves none of the job's reads or writes."""
    return None if path is None else Path(path).absolute()


def new_folder(
    explicit: PathLike | None, base: PathLike, stem: str, *, option: str = "--out", resumable: bool = False
) -> Path:
    """A new, empty output folder, as an absolute path (a job's writes go there even if a user's model
    changes the working directory). An explicit path may exist only if it is empty (or holds only what a
    job killed while starting left); otherwise a fresh name under `base` (timestamp plus a random suffix, so
    two jobs started in the same second, even in two processes, never share one). The caller locks it before
    cleaning it. `option` names the command's flag for the path, and `resumable` whether `--resume` can
    continue it."""
    if explicit is not None:
        p = Path(explicit)
        if p.is_symlink():  # planted in a sweep or lab folder, it would take the whole run outside
            raise CheckpointError(
                f"{p}: is a symbolic link; mnistlab writes no output folder through a link: "
                f"give the folder itself, or choose another {option}"
            )
        if p.exists() and not p.is_dir():
            raise CheckpointError(f"{p}: is a file, not a folder; choose another {option}")
        if p.exists() and not only_leftovers(p):
            resume = f"use --resume {p} to continue it, or " if resumable else ""
            raise CheckpointError(f"{p}: already exists and is not empty; {resume}choose another {option}")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"{p}: cannot create run directory ({e.strerror})") from None
        return p.absolute()
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
            return p.absolute()
        except FileExistsError:
            continue
        except OSError as e:
            raise CheckpointError(f"{p}: cannot create run directory ({e.strerror})") from None
    raise CheckpointError(f"{base}: could not find a free run directory name")


@contextmanager
def job_folder(
    folder: PathLike | None,
    under: PathLike = "runs",
    stem: str = "job",
    job: str = "job",
    *,
    writer: Writer = FILES,
    existing: bool = False,
    lock: bool = False,
    claim: Callable[[Path], None] | None = None,
) -> Iterator[JobFolder]:
    """The job's open folder: `folder` (created, empty, or a fresh name under `under` named after `stem`),
    or with `existing` the folder as it is (a run to resume). With `lock`, the job owns it (core.lock: a
    second owner gets one line) and removes what a killed writer of it left; `claim(path)` then checks,
    before the first write, that it is still the job's to write (another trainer may have taken it)."""
    if existing and folder is not None and Path(folder).is_symlink():
        raise CheckpointError(
            f"{folder}: is a symbolic link; mnistlab writes no output folder through a link: give the folder itself"
        )
    if existing and folder is None:
        raise TypeError("job_folder(existing=True) needs the folder")  # a caller's bug, not the user's
    path = Path(folder).absolute() if existing and folder is not None else new_folder(folder, under, stem)
    out = JobFolder(path, writer, job)
    owner = FolderLock(path, what="run") if lock and writer.writes else nullcontext()
    with owner:
        if lock and writer.writes:
            remove_leftovers(path, names=RUN_FILES)
        if claim is not None:
            claim(path)
        global _open_jobs
        outermost = _open_jobs == 0
        if outermost:
            stopping.release()  # a notebook's earlier job held stop requests until it ended: not this one's
        _open_jobs += 1
        try:
            with StopRequests() as stops:
                out.stops = stops
                try:
                    out.progress()
                    yield out
                except BaseException as e:
                    end = outcome(e)
                    with stops.deferred():  # a second signal does not cut the record of the first short
                        try:
                            out.end(end.state, end.line or first_line(e))
                        except MnistlabError:  # the disk that failed the job may refuse this too: say the first
                            pass
                        _recorded(outermost)
                    raise
                with stops.deferred():
                    kill_point("job-end")
                    out.end(out.ends_as)
                    _recorded(outermost)
        finally:
            _open_jobs -= 1


_open_jobs = 0  # job folders open in this process (a lab's runs are inside the lab's job)


def _recorded(outermost: bool) -> None:
    """The command's own job has recorded its final state: from here to the process's exit a stop request
    can no longer change how it ended (status.json and the exit code agree), so it is kept, not raised."""
    if outermost:
        stopping.hold()


def dataset(
    name: str, data_dir: PathLike | None = None, *, log: Log = _LOG, web: bool = True
) -> tuple[DatasetSpec, Path]:
    """The dataset's spec and its data root, with its four files fetched and verified there."""
    spec, root = get_dataset(name), data_root(data_dir)
    fetch(spec, root, log=log, web=web)
    return spec, root


def recorded_data(name: str, root: Path, config: Path, who: str) -> tuple[DatasetSpec, Path]:
    """The data root that a run's config.json names, only verified: `who` (a reader, a resume) neither creates
    it nor fetches into it, since anyone can edit the file; the user's --data-dir is where mnistlab fetches."""
    spec = get_dataset(name)
    where = f"the data_dir in {config}; {who} does not fetch into it: pass --data-dir to use another data root"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({where})")
    missing = verify_present(spec, root)
    if missing:
        raise DataError(f"{spec.raw_dir(root) / missing[0].name}: not there ({where})")
    return spec, root

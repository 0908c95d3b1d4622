"""Errors that reach the user as one line and exit code 2 (never a traceback)."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """An exception in one line for a one-line error: its type and the first line of its text (a call of
    sys.exit: the call itself)."""
    if isinstance(e, SystemExit):
        return f"its code called sys.exit({e.code!r})"
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


class MnistlabError(Exception):
    """Base class: anything the user can fix (bad input, bad data, missing files)."""

    exit_code = 2


class ConfigError(MnistlabError):
    """An option or setting is out of range or of the wrong kind."""


class DataError(MnistlabError):
    """A data file is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(MnistlabError):
    """A checkpoint or run directory cannot be used."""


class DivergenceError(MnistlabError):
    """Training produced a non-finite loss."""


class StorageError(MnistlabError):
    """A result could not be written (disk full, read-only folder); what was written before is intact."""


class DeviceError(MnistlabError):
    """The device failed (out of memory, no kernel for this GPU, a driver error); checkpoints are kept."""


class DistributedError(MnistlabError):
    """A data-parallel job's process group did not start, or a peer is missing, stopped or gone."""


class ModelError(MnistlabError):
    """A user's own model failed while it ran (training, timing): named, with its error's first line."""


class ResultFileError(CheckpointError):
    """A JSON or CSV file that mnistlab reads back (a result, a record) is missing, malformed or of
    the wrong shape. A CheckpointError too, so that callers that catch 'a run cannot be used' still do."""

"""TensorBoard event files for a run, written with torch.utils.tensorboard.SummaryWriter.

The runner decides when; this logger only receives numbers and writes them. Every value is
one already in the run's files, at the global step, so step and epoch curves share one axis:

    train/loss                          every log_every steps        steps.csv train_loss
    train/epoch_loss, val/loss,         once per epoch               metrics.csv train_loss, val_loss,
    val/accuracy, time/epoch_seconds,                                val_accuracy, epoch_seconds,
    time/samples_per_s                                               samples_per_s
    test/loss, test/accuracy            at the end                   test.json loss, accuracy
    hparams (HParams dashboard)         at the end: the config, with the metrics above

Event files are append-only, so a resumed run would repeat the steps trained after its last
checkpoint. Instead, opening the log rewrites it: a fresh event file holding exactly the
checkpoint's history is written aside (in a hidden folder), moved into the run directory,
and only then are the older event files deleted; new events go to a file of this session.
Only the holder of the run's lock may do this (the runner is). A kill in the moment between
the move and the deletions leaves duplicates that the next resume removes again.
Why not SummaryWriter(purge_step=...): TensorBoard's default reader (its Rust data server) ignores
purge_step's marker and keeps showing steps trained after the checkpoint (tests/faults/test_kill_tensorboard.py).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mnistlab.core.errors import CheckpointError, StorageError
from mnistlab.core.faults import kill_point
from mnistlab.core.logs import lines

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

EVENTS = "events.out.tfevents.*"
_OUR_EVENTS = re.compile(r"events\.out\.tfevents\.\d+\..+\.\d+\.\d+")  # SummaryWriter's: time, host, pid, count
_REWRITE_DIR = ".tensorboard-rewrite"  # not *.tmp: remove_leftovers deletes files of that name
STEP_TAG = "train/loss"
EPOCH_TAGS = {
    "train/epoch_loss": "train_loss",
    "val/loss": "val_loss",
    "val/accuracy": "val_accuracy",
    "time/epoch_seconds": "epoch_seconds",
    "time/samples_per_s": "samples_per_s",
}
TEST_TAGS = {"test/loss": "loss", "test/accuracy": "accuracy"}
HPARAM_METRICS = ("test/loss", "test/accuracy", "val/loss", "val/accuracy")
_NOT_HPARAMS = ("data_dir",)  # where the data lives is not a hyper-parameter


@contextmanager
def _storage(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise StorageError(
            f"{path}: cannot write TensorBoard events ({e.strerror or e}); "
            f"the run's other files are intact (or train with --no-tensorboard)"
        ) from None


def _summary_writer(log_dir: Path) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), flush_secs=3600)  # flushed explicitly, once per epoch


def installed() -> bool:
    """Whether torch.utils.tensorboard imports: it needs the tensorboard package (the [tensorboard] extra)."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def _write_steps(writer: Any, steps: Sequence[tuple[int, float]]) -> None:
    for step, loss in steps:
        writer.add_scalar(STEP_TAG, float(loss), int(step))


def _write_epoch(writer: Any, row: dict[str, float]) -> None:
    for tag, column in EPOCH_TAGS.items():
        writer.add_scalar(tag, float(row[column]), int(row["global_step"]))


def _ours(folder: Path) -> list[Path]:
    """The event files this logger wrote in `folder`: SummaryWriter's exact names (a user's own log
    with a suffix of its own is left alone), regular files, not links."""
    return [f for f in folder.glob(EVENTS) if _OUR_EVENTS.fullmatch(f.name) and f.is_file() and not f.is_symlink()]


def _remove_rewrite_dir(tmp: Path) -> None:
    """Remove the rewrite's own folder. Anything else of that name (a link, a file) is refused: the
    rewrite never writes through a link, moves files in from elsewhere or deletes outside the run."""
    if tmp.is_symlink() or (tmp.exists() and not tmp.is_dir()):
        raise CheckpointError(
            f"{tmp}: is {'a symbolic link' if tmp.is_symlink() else 'not a folder'}; mnistlab "
            f"rewrites TensorBoard events in a folder of this name: remove it (or train with "
            f"--no-tensorboard)"
        )
    shutil.rmtree(tmp, ignore_errors=True)


class NoLog:
    """--no-tensorboard: the same calls, nothing written (a run's event files are left as they are)."""

    def epoch(self, row: dict[str, float], steps: Sequence[tuple[int, float]]) -> None:
        pass

    def finish(self, hparams: dict[str, Any], test: dict[str, float], global_step: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLog(NoLog):
    def __init__(
        self, run_path: Path, history: Sequence[dict[str, float]], step_log: Sequence[dict[str, float]]
    ) -> None:
        self.path = Path(run_path)
        with _storage(self.path):
            self._rewrite(history, step_log)
            self._writer = _summary_writer(self.path)

    def _rewrite(self, history: Sequence[dict[str, float]], step_log: Sequence[dict[str, float]]) -> None:
        stale = _ours(self.path)
        tmp = self.path / _REWRITE_DIR
        _remove_rewrite_dir(tmp)  # a killed rewrite's half-written folder
        if history or step_log:
            tmp.mkdir()  # exclusive: the rewrite writes only into a folder it made
            writer = _summary_writer(tmp)
            _write_steps(writer, [(int(r["step"]), float(r["train_loss"])) for r in step_log])
            for row in history:
                _write_epoch(writer, row)
            writer.close()
            for f in _ours(tmp):
                os.replace(f, self.path / f.name)
            kill_point("tensorboard-rewrite")  # moved in, stale files not yet deleted (fault tests)
        for f in stale:
            f.unlink(missing_ok=True)
        _remove_rewrite_dir(tmp)

    def epoch(self, row: dict[str, float], steps: Sequence[tuple[int, float]]) -> None:
        """One finished epoch: its metrics.csv row and its (global step, loss) pairs."""
        with _storage(self.path):
            _write_steps(self._writer, steps)
            _write_epoch(self._writer, row)
            self._writer.flush()  # on disk now: a kill later loses nothing that the CSVs hold

    def finish(self, hparams: dict[str, Any], test: dict[str, float], global_step: int) -> None:
        """The test result, and the hyper-parameters with the final metrics; then close."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        with _storage(self.path):
            for tag, key in TEST_TAGS.items():
                self._writer.add_scalar(tag, float(test[key]), global_step)
            # torch's hparams() would store a bool as the number 0 or 1: shown as text instead
            values = {
                k: str(v) if isinstance(v, bool) else v
                for k, v in hparams.items()
                if k not in _NOT_HPARAMS and v is not None
            }
            # add_hparams would write into a new timestamped subfolder (a second run in TensorBoard's
            # list); the same three summaries go into this run's own file instead
            # the metrics are named only: the dashboard reads their values from these scalar tags
            for summary in hparams_summaries(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
                self._writer.file_writer.add_summary(summary, global_step)
            self.close()

    def close(self) -> None:
        with _storage(self.path):
            self._writer.close()


def open_log(
    run_path: Path,
    history: Sequence[dict[str, float]],
    step_log: Sequence[dict[str, float]],
    enabled: bool = True,
    log: Callable[[str], None] = _LOG,
) -> NoLog:
    """The run's TensorBoard log, rewritten to hold exactly `history` and `step_log` (the
    checkpoint's); the caller must hold the run's lock. Disabled, or without the tensorboard package
    (one line says so): a logger that writes nothing."""
    if not enabled:
        return NoLog()
    if not installed():
        log(
            "TensorBoard: no event files, the tensorboard package is not installed "
            "(pip install 'mnistlab[tensorboard]')"
        )
        return NoLog()
    try:
        str(run_path).encode("utf-8")
    except UnicodeEncodeError:  # TensorBoard's writer names its files in UTF-8 only
        log(
            f"TensorBoard: skipped, its event files need a folder name that is valid UTF-8 "
            f"({str(run_path).encode('utf-8', 'backslashreplace').decode()})"
        )
        return NoLog()
    return TensorBoardLog(run_path, history, step_log)

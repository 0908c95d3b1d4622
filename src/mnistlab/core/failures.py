"""One mapping from whatever ended a job to what its status records and what the user reads.

Every job that writes a status ends it through `outcome(e)`, and the command line turns the same
outcome into its one line and exit code, so a status can never say `running` after its job ended,
and no two places word the same failure differently:

- a signal: `interrupted` (exit 130) or `terminated` (exit 143), the job stays resumable;
- a non-finite loss: `diverged` (exit 2);
- `sys.exit()` called while a job ran (mnistlab itself never calls it: a user's model, or a library it uses):
  `failed`, one line, exit 2, whatever code it passed (exit 0 would say a failed job succeeded);
- bad input, a file, a user's own model, the device (out of memory on the CPU as on a GPU), a data-parallel
  peer that is gone, stopped or too slow: `failed`,
  one line, exit 2;
- anything else is a bug in mnistlab: `failed`, and the traceback is kept (exit 1).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mnistlab.core.distributed import lost_peer_line
from mnistlab.core.errors import DivergenceError, MnistlabError, ModelError, first_line
from mnistlab.core.stopping import Terminated

FINAL_STATES = ("completed", "failed", "interrupted", "terminated", "diverged", "pruned")


@dataclass(frozen=True)
class Outcome:
    state: str  # what status.json records
    line: str | None  # the one line for stderr; None: a bug, shown with its traceback
    exit_code: int


def _device_line(e: BaseException, device: object | None, batch_size: int | None) -> str | None:
    if "torch" not in sys.modules:  # no tensor was ever made: it cannot be a device failure
        return None
    from mnistlab.core.device import device_error_message

    return device_error_message(e, device, batch_size)  # type: ignore[arg-type]


def outcome(e: BaseException, *, device: object | None = None, batch_size: int | None = None) -> Outcome:
    """How a job that raised `e` ends. `batch_size`: the batch the user can change, for out of memory."""
    if isinstance(e, Terminated):
        return Outcome("terminated", "terminated", 143)
    if isinstance(e, KeyboardInterrupt):
        return Outcome("interrupted", "interrupted", 130)
    if isinstance(e, DivergenceError):
        return Outcome("diverged", str(e), e.exit_code)
    if isinstance(e, SystemExit):
        return Outcome(
            "failed",
            f"sys.exit({e.code!r}) was called while the command ran (by a user's model, or a library it uses); stopped",
            2,
        )
    if isinstance(e, MnistlabError):
        return Outcome("failed", str(e), e.exit_code)
    line = _device_line(e, device, batch_size) or lost_peer_line(e)
    if line is not None:
        return Outcome("failed", line, 2)
    if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):  # a file problem not caught nearer
        return Outcome("failed", f"{e.filename}: {e.strerror or e}" if e.filename else str(e.strerror or e), 2)
    return Outcome("failed", None, 1)


def is_builtin_model(spec: str) -> bool:
    """A registry name (mlp, cnn, speednet): a user's own model is always `where:Name`."""
    return ":" not in spec


def as_model_error(e: BaseException, spec: str, doing: str) -> ModelError | None:
    """A user's model's own failure as one line naming the model; None for a built-in model (a bug of
    ours) and for whatever already has its own line (a signal, mnistlab's errors, the device, memory,
    a file, a lost data-parallel peer): the mapping above is asked, not repeated. A sys.exit() in the
    model's code is its failure too."""
    if isinstance(e, SystemExit) and not is_builtin_model(spec):
        return ModelError(f"model {spec} failed {doing}: {first_line(e)}")
    if not isinstance(e, Exception) or is_builtin_model(spec) or outcome(e).line is not None:
        return None
    return ModelError(f"model {spec} failed {doing}: {first_line(e)}")


@contextmanager
def blame_model(spec: str, doing: str) -> Iterator[None]:
    """Run a user's model: what its code raises becomes one ModelError line (exit 2)."""
    try:
        yield
    except (Exception, SystemExit) as e:
        err = as_model_error(e, spec, doing)
        if err is None:
            raise
        raise err from e

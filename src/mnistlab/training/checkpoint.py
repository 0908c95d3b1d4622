"""Checkpoints: written atomically, loaded with weights_only=True (no code runs on load), and
validated whole before any of it is used.

weights_only only guarantees that loading runs no code; the contents can still be anything a
pickle of tensors and plain data can hold. A momentum buffer of the wrong shape makes the fused
SGD kernel read out of bounds, so every field is checked against what uses it: one line naming
the file and the field, exit 2, never a crash further on.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mnistlab.core import rundir as rd
from mnistlab.core.writer import FILES, Writer
from mnistlab.core.errors import CheckpointError
from mnistlab.training.config import config_type_errors

REQUIRED = ("model", "optimizer", "epoch", "global_step", "config", "history", "step_log", "best_val_loss",
            "best_epoch", "rng_cpu")
INTEGRAL_METRICS = ("epoch", "steps", "global_step", "session")


def save_checkpoint(path: Path, state: dict[str, Any], writer: Writer = FILES) -> None:
    if not writer.writes:  # a data-parallel rank other than 0: do not even serialise
        return
    buf = io.BytesIO()
    torch.save(state, buf)
    writer.bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint and validate everything in it that does not depend on the model."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with rd.open_regular(path, "a checkpoint") as f:  # never a FIFO or a device
            state = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise CheckpointError(f"{path}: refused: it holds objects other than tensors and plain data "
                                  f"(loading it could run code)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError,
            TypeError, IndexError, RecursionError, MemoryError):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path}: not a mnistlab checkpoint (missing model or epoch)")
    validate_checkpoint(state, path)
    return state


def _bad(path: Path, field: str, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: field {field!r} {why}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def validate_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Types and consistency of every field (the model and optimizer tensors are checked against
    the model by load_model_state and load_optimizer_state)."""
    for key in REQUIRED:
        if key not in state:
            raise _bad(path, key, "is missing (not a complete mnistlab checkpoint)")
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise _bad(path, "model", "must map parameter names to tensors")
    opt = state["optimizer"]
    if (not isinstance(opt, dict) or not isinstance(opt.get("state"), dict)
            or not isinstance(opt.get("param_groups"), list)):
        raise _bad(path, "optimizer", "must be an optimizer state (state and param_groups)")
    # types and keys only: a checkpoint stays readable where its dataset is not registered
    problems = config_type_errors(state["config"], require=True)
    if problems:
        raise _bad(path, "config", f"is not a valid configuration ({problems[0]})")
    history = state["history"]
    if not isinstance(history, list):
        raise _bad(path, "history", "must be a list of epoch rows")
    for i, row in enumerate(history):
        where = f"history[{i}]"
        if not isinstance(row, dict):
            raise _bad(path, where, "must be an object of numbers")
        missing = [k for k in rd.REQUIRED_METRICS if k not in row]
        unknown = [k for k in row if k not in rd.METRIC_FIELDS]
        if missing or unknown:
            raise _bad(path, where, f"has missing {missing} or unknown {unknown} columns")
        for k, v in row.items():
            if not _is_number(v) or (k in INTEGRAL_METRICS and v != int(v)):
                raise _bad(path, f"{where}.{k}", f"must be a {'whole ' if k in INTEGRAL_METRICS else ''}number, "
                                                 f"got {v!r}")
        if row["epoch"] != i + 1:
            raise _bad(path, f"{where}.epoch", f"is {row['epoch']!r}, expected {i + 1}")
    step_log = state["step_log"]
    if not isinstance(step_log, list) or not all(
            isinstance(r, dict) and set(r) == set(rd.STEP_FIELDS) and all(_is_number(v) for v in r.values())
            for r in step_log):
        raise _bad(path, "step_log", f"must be a list of rows of numbers {rd.STEP_FIELDS}")
    epoch = state["epoch"]
    mid_epoch = state.get("partial") is not None  # a mid-epoch checkpoint may come before the first epoch's end
    if not _is_int(epoch) or epoch != len(history) or epoch < (0 if mid_epoch else 1):
        raise _bad(path, "epoch", f"must be the number of epochs in its history ({len(history)}), got {epoch!r}")
    if mid_epoch:
        _check_partial(state["partial"], path)
    expected_step = int(history[-1]["global_step"]) if history else 0
    if not _is_int(state["global_step"]) or state["global_step"] != expected_step:
        raise _bad(path, "global_step", f"must be {expected_step} (its history's), got {state['global_step']!r}")
    if not _is_int(state["best_epoch"]) or not 0 <= state["best_epoch"] <= epoch:
        raise _bad(path, "best_epoch", f"must be a whole number in 0..{epoch}, got {state['best_epoch']!r}")
    if not _is_number(state["best_val_loss"]):
        raise _bad(path, "best_val_loss", f"must be a number, got {state['best_val_loss']!r}")
    rng = state["rng_cpu"]
    size = torch.get_rng_state().numel()
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != (size,):
        raise _bad(path, "rng_cpu", f"must be the CPU generator's state (uint8 tensor of {size} bytes)")


def _check_partial(partial: Any, path: Path) -> None:
    """The steps of the epoch under way that a mid-epoch checkpoint holds (training.loop.EpochProgress)."""
    if not isinstance(partial, dict) or set(partial) != {"steps", "losses", "samples", "seconds"}:
        raise _bad(path, "partial", "must hold steps, losses, samples and seconds")
    steps, losses = partial["steps"], partial["losses"]
    if not _is_int(steps) or steps < 1:
        raise _bad(path, "partial.steps", f"must be a whole number of at least 1, got {steps!r}")
    if not isinstance(losses, torch.Tensor) or losses.dtype != torch.float32 or losses.shape != (steps,):
        raise _bad(path, "partial.losses", f"must be a float32 tensor of {steps} step losses")
    if not _is_int(partial["samples"]) or partial["samples"] < steps:
        raise _bad(path, "partial.samples", f"must be a whole number of at least {steps}, got {partial['samples']!r}")
    if not _is_number(partial["seconds"]) or not 0 <= partial["seconds"] < math.inf:
        raise _bad(path, "partial.seconds", f"must be a finite number of seconds, got {partial['seconds']!r}")


def _check_tensor(t: Any, like: torch.Tensor, path: Path, field: str) -> None:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        raise _bad(path, field, "must be a dense tensor")
    if t.shape != like.shape or t.dtype != like.dtype:
        raise _bad(path, field, f"is {t.dtype} {list(t.shape)}, expected {like.dtype} {list(like.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"{path}: {field} holds NaN or infinite values: these weights are unusable "
                              f"(the run diverged or the file was altered); evaluate or resume another checkpoint")


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Check every tensor of state["model"] against `model` (names, shapes, dtypes, finite), then load."""
    expected = model.state_dict()
    got = state["model"]
    missing, unknown = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unknown:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unknown[:3]}"
        raise CheckpointError(f"{path}: does not fit this model ({what} in field 'model')")
    for name, like in expected.items():
        t = got[name]
        if isinstance(t, torch.Tensor) and (t.shape != like.shape or t.dtype != like.dtype):
            raise CheckpointError(f"{path}: does not fit this model (field 'model.{name}' is {t.dtype} "
                                  f"{list(t.shape)}, the model's is {like.dtype} {list(like.shape)})")
        _check_tensor(t, like, path, f"model.{name}")
    try:
        model.load_state_dict(got)
    except (RuntimeError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not fit this model ({first})") from None


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], path: Path) -> None:
    """Check state["optimizer"] against `optimizer`'s parameters (groups, ids, every state tensor's
    shape, dtype and values), then load it. The tensors were loaded onto the CPU; the optimizer
    moves each to its parameter's device as it loads them."""
    opt = state["optimizer"]
    groups, live = opt["param_groups"], optimizer.param_groups
    params = [p for g in live for p in g["params"]]
    if len(groups) != len(live):
        raise _bad(path, "optimizer.param_groups", f"has {len(groups)} groups, the optimizer {len(live)}")
    ids: list[int] = []
    for i, (g, lg) in enumerate(zip(groups, live)):
        where = f"optimizer.param_groups[{i}]"
        if not isinstance(g, dict) or not isinstance(g.get("params"), list) or not all(map(_is_int, g["params"])):
            raise _bad(path, where, "must be an object with a list of parameter ids")
        if len(g["params"]) != len(lg["params"]):
            raise _bad(path, where, f"has {len(g['params'])} parameters, the optimizer {len(lg['params'])}")
        if set(g) != set(lg):
            raise _bad(path, where, f"has the settings {sorted(g)}, expected {sorted(lg)}")
        for k, v in g.items():
            if k != "params" and not (v is None or isinstance(v, (bool, str)) or (_is_number(v) and math.isfinite(v))):
                raise _bad(path, f"{where}.{k}", f"must be a finite number, a flag or null, got {v!r}")
        ids += g["params"]
    if sorted(ids) != list(range(len(params))):
        raise _bad(path, "optimizer.param_groups", f"must number the parameters 0..{len(params) - 1} once each")
    by_id = dict(zip(ids, params))
    for pid, entry in opt["state"].items():
        where = f"optimizer.state[{pid!r}]"
        if pid not in by_id or not isinstance(entry, dict):
            raise _bad(path, where, "is not the state of a parameter of this model")
        for k, v in entry.items():
            if k == "step" and (_is_number(v) or (isinstance(v, torch.Tensor) and v.numel() == 1)):
                continue
            if v is None:
                continue
            _check_tensor(v, by_id[pid].detach(), path, f"{where}.{k}")
    try:
        optimizer.load_state_dict(opt)
    except (RuntimeError, TypeError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: field 'optimizer' does not fit this optimizer ({first})") from None


def restore_rng(state: dict[str, Any], path: Path) -> None:
    try:
        torch.set_rng_state(state["rng_cpu"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise _bad(path, "rng_cpu", f"is not a valid generator state ({str(e).splitlines()[0]})") from None

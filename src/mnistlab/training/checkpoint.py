"""Checkpoints: written atomically, loaded with weights_only=True (no code runs on load), and
validated whole before any of it is used.

weights_only only guarantees that loading runs no code; the contents can still be anything a
pickle of tensors and plain data can hold. A momentum buffer of the wrong shape makes the fused
SGD kernel read out of bounds, so every field is checked against what uses it: one line naming
the file and the field, exit 2, never a crash further on.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mnistlab.core import rundir as rd
from mnistlab.core.errors import CheckpointError, ModelError
from mnistlab.core.schema import Check, Closed, Range, check, is_number, maybe
from mnistlab.core.writer import FILES, Writer
from mnistlab.training.config import CONFIG_SCHEMA, MAX_STEPS

_FLAG = maybe(Check(lambda v: isinstance(v, bool), "true/false"))
# an optimizer group's settings: the numbers the update multiplies by, each in its range, and its flags
PARAM_GROUP = {
    "params": ["count"],
    "lr?": Check(lambda v: is_number(v) and 0 < v < 1e6, "a number in (0, 1e6)"),
    "momentum?": Check(lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "dampening?": Range(0, 1),
    "weight_decay?": Range(0, 1e6),
    "nesterov?": _FLAG,
    "maximize?": _FLAG,
    "foreach?": _FLAG,
    "differentiable?": _FLAG,
    "fused?": _FLAG,
    "capturable?": _FLAG,
}
CHECKPOINT_SCHEMA = {
    "model": Check(
        lambda m: isinstance(m, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in m.items()),
        "a map of parameter names to tensors",
    ),
    "optimizer": {"state": Check(lambda v: isinstance(v, dict), "an object"), "param_groups": [PARAM_GROUP]},
    "epoch": Range(0, rd.MAX_EPOCHS, whole=True),
    "global_step": "count",
    # types and ranges only: a checkpoint stays readable where its dataset is not registered
    "config": CONFIG_SCHEMA,
    "history": [Closed(rd.METRIC_ROW), (0, rd.MAX_EPOCHS)],
    "step_log": [Closed(rd.STEP_ROW), (0, rd.MAX_STEP_ROWS)],
    "best_val_loss": Check(lambda v: is_number(v) or v == float("inf"), "a number (inf before the first epoch)"),
    "best_epoch": "count",
    "rng_cpu": Check(
        lambda r: isinstance(r, torch.Tensor) and r.dtype == torch.uint8 and r.shape == torch.get_rng_state().shape,
        "the CPU generator's state (a uint8 tensor)",
    ),
    "partial?": maybe(Check(lambda v: isinstance(v, dict), "an object")),
}
PARTIAL_SCHEMA = Closed(
    {
        "steps": Range(1, MAX_STEPS, whole=True),
        "losses": Check(
            lambda t: isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.dim() == 1,
            "a float32 tensor of losses",
        ),
        "samples": "positive count",
        "seconds": "seconds",
    }
)


def save_checkpoint(path: Path, state: dict[str, Any], writer: Writer = FILES) -> None:
    if not writer.writes:  # a data-parallel rank other than 0: do not even serialise
        return
    bad = next(((k, v) for k, v in state["model"].items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:  # it would save, and then no eval or resume could read it back: fail now
        raise ModelError(
            f"the model's state_dict() holds {bad[0]!r}, a {type(bad[1]).__name__}, not a tensor; "
            f"a checkpoint must hold only tensors (keep other state out of state_dict())"
        )
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
            raise CheckpointError(
                f"{path}: refused: it holds objects other than tensors and plain data (loading it could run code)"
            ) from None
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from None
    except (
        RuntimeError,
        EOFError,
        zipfile.BadZipFile,
        ValueError,
        OSError,
        AttributeError,
        KeyError,
        TypeError,
        IndexError,
        RecursionError,
        MemoryError,
    ):
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt)") from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path}: not a mnistlab checkpoint (missing model or epoch)")
    validate_checkpoint(state, path)
    return state


def _bad(path: Path, field: str, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: field {field!r} {why}")


def validate_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Every field's type and range (core/schema.py), then what ties them together; the model and
    optimizer tensors are checked against the model by load_model_state and load_optimizer_state."""
    check(state, CHECKPOINT_SCHEMA, str(path), CheckpointError)
    history = rd.check_history(f"{path}: field 'history'", state["history"], label="row", first=1)
    epoch, partial = state["epoch"], state.get("partial")
    if epoch != len(history) or epoch < (0 if partial is not None else 1):
        raise _bad(path, "epoch", f"must be the number of epochs in its history ({len(history)}), got {epoch!r}")
    if partial is not None:
        check(partial, PARTIAL_SCHEMA, f"{path}: field 'partial'", CheckpointError)
        if partial["losses"].shape != (partial["steps"],) or partial["samples"] < partial["steps"]:
            raise _bad(path, "partial", f"must hold {partial['steps']} step losses and at least as many samples")
    expected_step = int(history[-1]["global_step"]) if history else 0
    if state["global_step"] != expected_step:
        raise _bad(path, "global_step", f"must be {expected_step} (its history's), got {state['global_step']!r}")
    if not 0 <= state["best_epoch"] <= epoch:
        raise _bad(path, "best_epoch", f"must be a whole number in 0..{epoch}, got {state['best_epoch']!r}")


def _check_tensor(t: Any, like: torch.Tensor, path: Path, field: str) -> None:
    if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
        raise _bad(path, field, "must be a dense tensor")
    if t.shape != like.shape or t.dtype != like.dtype:
        raise _bad(path, field, f"is {t.dtype} {list(t.shape)}, expected {like.dtype} {list(like.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise CheckpointError(
            f"{path}: {field} holds NaN or infinite values: these weights are unusable "
            f"(the run diverged or the file was altered); evaluate or resume another checkpoint"
        )


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: Path) -> None:
    """Check every tensor of state["model"] against `model` (names, shapes, dtypes, finite), then load."""
    expected = model.state_dict()
    got = state["model"]
    missing, unknown = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing or unknown:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unknown[:3]}"
        raise CheckpointError(f"{path}: does not fit this model ({what} in field 'model')")
    for name, like in expected.items():
        _check_tensor(got[name], like, path, f"model.{name}")
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
    for i, (g, lg) in enumerate(zip(groups, live, strict=True)):
        where = f"optimizer.param_groups[{i}]"
        if len(g["params"]) != len(lg["params"]):
            raise _bad(path, where, f"has {len(g['params'])} parameters, the optimizer {len(lg['params'])}")
        if set(g) != set(lg):
            raise _bad(path, where, f"has the settings {sorted(g)}, expected {sorted(lg)}")
        for k, v in g.items():  # a setting this check does not know: a number, a flag or null, never text
            if k != "params" and not (v is None or isinstance(v, bool) or is_number(v)):
                raise _bad(path, f"{where}.{k}", f"must be a finite number, a flag or null, got {v!r}")
        ids += g["params"]
    if sorted(ids) != list(range(len(params))):
        raise _bad(path, "optimizer.param_groups", f"must number the parameters 0..{len(params) - 1} once each")
    by_id = dict(zip(ids, params, strict=True))
    for pid, entry in opt["state"].items():
        where = f"optimizer.state[{pid!r}]"
        if pid not in by_id or not isinstance(entry, dict):
            raise _bad(path, where, "is not the state of a parameter of this model")
        for k, v in entry.items():
            if v is None or (k == "step" and (is_number(v) or (isinstance(v, torch.Tensor) and v.numel() == 1))):
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

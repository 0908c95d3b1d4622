"""A profiler trace of a few steps: where one step's time goes, operator by operator, to open in Perfetto
(ui.perfetto.dev) or chrome://tracing.

torch.profiler records the steps (CPU operators, and CUDA kernels on a GPU) after untimed warm-up steps,
and writes Chrome's trace-event JSON (`traceEvents`). A trace is taken in a pass of its own, after any timing
(`bench --trace`, `train --trace`): the profiler's hooks slow every operator down, so a traced step is never a
timed one. `write_trace` puts the bytes into the folder the user named, whole or not at all.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mnistlab.core.atomicfile import make_folder
from mnistlab.core.defaults import TRACE_STEPS, TRACE_WARMUP
from mnistlab.core.device import synchronize
from mnistlab.core.errors import MnistlabError
from mnistlab.core.schema import check
from mnistlab.core.writer import FILES

MAX_TRACED_STEPS = 100  # a trace of more steps is tens of MB that no viewer opens comfortably
TRACE_SCHEMA = {"traceEvents": [{"name?": "text", "ph?": "text"}, "nonempty"]}


def trace_steps(
    step: Callable[[], Any], device: torch.device, steps: int = TRACE_STEPS, warmup: int = TRACE_WARMUP
) -> bytes:
    """Chrome trace-event JSON of `steps` calls of `step` on `device`, after `warmup` untraced ones; each
    traced step is a `ProfilerStep#N` range holding its operators."""
    from torch.profiler import ProfilerActivity, profile, schedule

    if not 1 <= steps <= MAX_TRACED_STEPS:
        raise MnistlabError(f"a trace holds 1 to {MAX_TRACED_STEPS} steps, got {steps}")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(
        activities=activities, schedule=schedule(wait=0, warmup=warmup, active=steps, repeat=1), record_shapes=True
    ) as prof:
        for _ in range(warmup + steps):
            step()
            synchronize(device)
            prof.step()
    with tempfile.TemporaryDirectory(prefix="mnistlab-trace-") as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        data = path.read_bytes()
    check(json.loads(data), TRACE_SCHEMA, "the profiler's trace")  # what Perfetto needs: events, named
    return data


def trace_name(*parts: str) -> str:
    """A trace's file name from its parts (a job folder's name, a model, a device...): `a-b-c.trace.json`, with
    anything but letters, digits, '.', '_' and '-' (a model spec's path and colon) as '_'."""
    return "-".join(re.sub(r"[^\w.-]+", "_", p).strip("_") or "_" for p in parts) + ".trace.json"


def write_trace(data: bytes, folder: str | Path, name: str) -> Path:
    """`data` as `folder`/`name` (the folder is created if absent), whole or not at all (core/writer.py);
    returns the path."""
    path = make_folder(Path(folder)) / name
    FILES.bytes(path, data)
    return path


def events(trace: bytes) -> int:
    """How many events a trace holds."""
    return len(json.loads(trace)["traceEvents"])

"""How many threads torch computes with: chosen for the machine as it is now, not as it was built.

torch takes every core by default. On 2 cores beside one busy process, 2 threads that must meet at
every operation's barrier lose far more than half their speed (an MLP step 20-100x slower than with
1 thread, issue 20). So mnistlab gives torch the CPUs this process may use (its affinity) less those
the other runnable processes hold now, at the start of each command and at each training epoch.
Under torchrun the workers on a machine share its CPUs out. `--threads N`, or OMP_NUM_THREADS outside
torchrun (which sets it to 1 itself), pins the count.

OpenMP's wait policy is left as the user has it (default: spin a while, then sleep). Setting it to
PASSIVE was tried and measured (docs/benchmarks.md): beside a busy process it helped 2 threads by
about 1.2x, but on a quiet machine it made an MLP step 5x and the speedrun 2x slower, because
every small operation then pays a thread's wake-up; with the count chosen from the load, a busy
machine gets 1 thread, which never waits at a barrier.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.defaults import MAX_THREADS
from mnistlab.core.errors import ConfigError


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count and why: recorded in env.json and every result file."""

    threads: int
    source: str  # "auto", "--threads" or "OMP_NUM_THREADS"
    cpus: int  # CPUs this process may run on
    workers: int  # processes of this job on this machine (torchrun's LOCAL_WORLD_SIZE)
    others_runnable: float | None  # runnable tasks that are not this process's, seen now (None: unknown)
    load_avg_1m: float | None
    wait_policy: str | None  # OMP_WAIT_POLICY as torch's OpenMP read it
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose_threads(cpus: int, others: float | None, workers: int = 1) -> tuple[int, str]:
    """THE rule: each of `workers` processes gets an equal share of the `cpus`, less what the
    `others` runnable tasks (outside this job) hold. Never fewer than 1; unknown load: the share."""
    share = max(1, cpus // workers)
    who = f"{cpus} usable CPU{'s' * (cpus != 1)}" + (f" shared by {workers} workers" if workers > 1 else "")
    if others is None:
        return share, f"{who}, load unknown here: {share} thread{'s' * (share != 1)}"
    # a sibling worker counts as runnable too: at most (workers - 1) * share of `others` are ours
    outside = max(0.0, others - (workers - 1) * share) if workers > 1 else others
    free = max(1, min(share, math.floor((cpus - outside + 0.5) / workers)))  # half a task rounds to a whole
    return free, f"{who}, {outside:g} other runnable process{'es' * (outside != 1)}: {free} thread{'s' * (free != 1)}"


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _procs_running() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _own_running() -> int:
    """This process's threads that are running or runnable now (its spinning OpenMP threads too)."""
    n = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            n += stat.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return n


def others_runnable(samples: int = 5, gap_s: float = 0.002) -> float | None:
    """Runnable tasks now that are not this process's (median of a few samples of /proc/stat's
    procs_running, a queue length unlike the load average, which lags by a minute). None: no /proc."""
    seen = []
    for i in range(samples):
        total = _procs_running()
        if total is None:
            return None
        seen.append(max(0, total - _own_running()))
        if i + 1 < samples:
            time.sleep(gap_s)
    return float(statistics.median(seen))


def _workers() -> int:
    """Processes of this job on this machine: torchrun's LOCAL_WORLD_SIZE (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _pinned_by_env() -> int | None:
    """OMP_NUM_THREADS, a user's pin, except under torchrun (which sets it to 1 for every job); one above
    MAX_THREADS is one line (torch crashes with 100,000)."""
    if _workers() > 1:
        return None
    try:
        v = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    if v > MAX_THREADS:
        raise ConfigError(
            f"OMP_NUM_THREADS={v}: at most {MAX_THREADS} threads (this process may use "
            f"{usable_cpus()} CPUs); set it to the CPUs to use, or unset it"
        )
    return v if v >= 1 else None


_pinned: int | None = None  # --threads, or --deterministic's count
_pin_source = "--threads"
_exact = False  # the pinned count is a run's recorded one: kept even above the usable CPUs (its rounding)
_current: ThreadChoice | None = None


def apply(threads: int | None = None, samples: int = 5) -> ThreadChoice:
    """Choose (or pin, with `threads`) the count and set torch to it: at the start of a command. A pin above
    the CPUs this process may use is capped to them (said in the choice's reason, and by `capped()`)."""
    global _pinned, _pin_source, _exact
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ConfigError(f"--threads must be in 1..{MAX_THREADS}, got {threads}")
    _pinned, _pin_source, _exact = threads, "--threads", False
    return refresh(samples)


def capped() -> str | None:
    """Why the pinned count is not the one asked for (more threads than usable CPUs), in one line; None if it is."""
    c = _current
    if c is None or c.source not in ("--threads", "OMP_NUM_THREADS") or "capped" not in c.reason:
        return None
    return f"{c.reason}: more threads than CPUs only wait for each other at every operation"


def pin_for_repeatability(recorded: int | None = None) -> ThreadChoice:
    """--deterministic: one count for every epoch and session, whatever the load, because the thread
    count changes how a sum is split, and so its rounding. A count the user pinned stays. Resuming, the
    run's `recorded` count is kept, even on a machine (or an affinity) with fewer CPUs; a different pin is
    one line, since it would change the rounding of the epochs still to come."""
    global _pinned, _pin_source, _exact
    if recorded is not None:
        asked = _pinned if _pinned is not None else _pinned_by_env()
        if not 1 <= recorded <= MAX_THREADS:
            raise ConfigError(f"--deterministic: the run records {recorded} threads, not a count in 1..{MAX_THREADS}")
        if asked is not None and asked != recorded:
            source = _pin_source if _pinned is not None else "OMP_NUM_THREADS"
            raise ConfigError(
                f"--deterministic: this run computed with {recorded} thread{'s' * (recorded != 1)}; "
                f"{source} {asked} would change the rounding of its remaining epochs: give "
                f"{recorded}, or leave it out"
            )
        _pinned, _pin_source, _exact = recorded, "--deterministic", True
    elif _pinned is None and _pinned_by_env() is None:
        _pinned, _pin_source = max(1, usable_cpus() // _workers()), "--deterministic"
    return refresh()


def refresh(samples: int = 5) -> ThreadChoice:
    """Choose again for the load now (a training epoch's start); a pinned count stays."""
    import torch

    global _current
    env_pin = _pinned_by_env()
    cpus, workers = usable_cpus(), _workers()
    others = others_runnable(samples)
    if _pinned is not None or env_pin is not None:
        n = _pinned if _pinned is not None else env_pin
        assert n is not None
        source = _pin_source if _pinned is not None else "OMP_NUM_THREADS"
        reason = (
            f"pinned by {source}"
            if source != "--deterministic"
            else "--deterministic: the run's recorded count, kept for its rounding"
            if _exact
            else "--deterministic: the usable CPUs' share, the same whatever the load"
        )
        if n > cpus and not _exact and source != "--deterministic":
            reason = f"{source} {n} capped to the {cpus} usable CPU{'s' * (cpus != 1)}"
            n = cpus
    else:
        n, reason = choose_threads(cpus, others, workers)
        source = "auto"
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _current = ThreadChoice(n, source, cpus, workers, others, _load_1m(), _policy_now(), reason)
    return _current


def worker_threads(workers: int) -> int:
    """Threads for each of `workers` processes that this one starts side by side: the pin, else the rule."""
    if _pinned is not None:
        return _pinned if _exact else max(1, min(_pinned, usable_cpus()))
    return choose_threads(usable_cpus(), others_runnable(), workers)[0]


def current() -> ThreadChoice:
    """The last choice; made now (auto) if none was yet."""
    return _current or refresh()


def _policy_now() -> str | None:
    """OMP_WAIT_POLICY as the user set it (mnistlab leaves it alone); None: OpenMP's default."""
    return os.environ.get("OMP_WAIT_POLICY") or None


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None

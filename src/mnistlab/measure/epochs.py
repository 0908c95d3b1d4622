"""Epoch times read honestly, with core/timing.py's rules.

The first epoch of every train/resume session is reported apart and every "per epoch" figure,
device comparison and speed-up uses the steady-state epochs only. The first epoch is called cold
only where coldness was measured: a session whose warm-up (compile, graph capture, first-call
costs) was timed apart records it on its first row (`warmup_s`); otherwise it is "the first epoch".
An epoch whose row says the load average exceeded the cores (`load_1m`, `cpu_count`) is marked busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from mnistlab.core.timing import Load, Repeats, is_busy


@dataclass(frozen=True)
class EpochTiming(Repeats):
    cold_epochs: list[int]  # the first epoch of each session (cold only where `warmup_s` measured it)
    cold_s: list[float]
    steady_epochs: list[int]
    steady_s: list[float]  # training seconds of the steady-state epochs
    steady_step_s: list[float]  # seconds per training step in those epochs (equal work across devices)
    steady_samples_per_s: list[float]
    warmup_s: list[float]  # each session's warm-up that was timed apart (none: coldness not measured)
    busy_epochs: list[int]  # epochs measured while the load average exceeded the cores

    @property
    def times(self) -> Sequence[float]:
        return self.steady_s

    @property
    def load(self) -> Load:  # type: ignore[override]
        return {}  # each epoch's own load marks it busy (busy_epochs); the spread alone judges the rest

    def words(self, marks: bool = True) -> str:
        """ "first epoch 19.70 s; steady state 0.52 s per epoch (0.49-0.61 s over 9 epochs)"; with a measured
        warm-up, "cold start (warm-up, timed apart) 1.20 s; first epoch ...". `marks`: say busy epochs and an
        unstable steady state here (a report that says the machine's stability once, elsewhere, passes False)."""
        times = ", ".join(f"{t:.2f} s" for t in self.cold_s)
        first = (
            f"first epoch {times}"
            if len(self.cold_s) == 1
            else f"first epoch of each of {len(self.cold_s)} sessions {times}"
        )
        if self.warmup_s:
            warm = ", ".join(f"{t:.2f} s" for t in self.warmup_s)
            first = (
                f"cold start (the untimed warm-up: compile, capture and first-call costs, timed apart) {warm}; {first}"
            )
        if self.busy_epochs and marks:
            first += (
                f"; epoch{'s' if len(self.busy_epochs) > 1 else ''} {', '.join(map(str, self.busy_epochs))} "
                f"measured while the machine was busy (load average above its cores): not stable evidence"
            )
        if not self.steady_s:
            return f"{first}; no steady-state epoch yet (every epoch was the first of its session)"
        s = self.spread
        if s.n == 1:
            return f"{first}; steady state {s.median:.2f} s per epoch (1 epoch, no range)"
        judged = self.stability
        return (
            f"{first}; steady state {s.median:.2f} s per epoch ({s.min:.2f}\u2013{s.max:.2f} s over {s.n} epochs)"
            + ("" if judged.stable or not marks else f" [{judged.reason}]")
        )


def _session(row: dict[str, float]) -> int:
    return int(row.get("session", 1) or 1)


def epoch_timing(rows: Sequence[dict[str, float]]) -> EpochTiming:
    """Split metrics.csv rows into first epochs (first of a session) and steady-state epochs."""
    cold: list[dict[str, float]] = []
    steady: list[dict[str, float]] = []
    seen: set[int] = set()
    for r in rows:
        (steady if _session(r) in seen else cold).append(r)
        seen.add(_session(r))
    per_step = [r["train_seconds"] / r["steps"] for r in steady if r.get("steps")]
    busy = [int(r["epoch"]) for r in rows if is_busy(r.get("load_1m"), int(r.get("cpu_count") or 0))]
    return EpochTiming(
        [int(r["epoch"]) for r in cold],
        [r["train_seconds"] for r in cold],
        [int(r["epoch"]) for r in steady],
        [r["train_seconds"] for r in steady],
        per_step,
        [r["samples_per_s"] for r in steady],
        [r["warmup_s"] for r in cold if "warmup_s" in r],
        busy,
    )


def resume_points(rows: Sequence[dict[str, float]]) -> list[float]:
    """Epoch positions (between two epochs) where a later session resumed the run."""
    return [int(a["epoch"]) + 0.5 for a, b in pairwise(rows) if _session(b) != _session(a)]

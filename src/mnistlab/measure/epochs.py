"""Epoch times read honestly: the first epoch of every train/resume session is cold (allocator,
thread pool, first-call costs, caches), so it is reported apart, and every "per epoch" figure,
device comparison and speed-up uses the steady-state epochs only."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EpochTiming:
    cold_epochs: list[int]  # the first epoch of each session
    cold_s: list[float]
    steady_epochs: list[int]
    steady_s: list[float]  # training seconds of the steady-state epochs
    steady_step_s: list[float]  # seconds per training step in those epochs (equal work across devices)
    steady_samples_per_s: list[float]

    @property
    def steady_median(self) -> float:
        return statistics.median(self.steady_s)

    @property
    def steady_min(self) -> float:
        return min(self.steady_s)

    @property
    def steady_max(self) -> float:
        return max(self.steady_s)

    def words(self) -> str:
        """"first (cold) epoch 19.70 s; steady state 0.52 s per epoch (0.49-0.61 s over 9 epochs)"."""
        cold = ", ".join(f"{t:.2f} s" for t in self.cold_s)
        first = (f"first (cold) epoch {cold}" if len(self.cold_s) == 1
                 else f"first (cold) epoch of each of {len(self.cold_s)} sessions {cold}")
        if not self.steady_s:
            return f"{first}; no steady-state epoch yet (every epoch was the first of its session)"
        n = len(self.steady_s)
        rng = f" ({self.steady_min:.2f}\u2013{self.steady_max:.2f} s over {n} epochs)" if n > 1 else " (1 epoch)"
        return f"{first}; steady state {self.steady_median:.2f} s per epoch{rng}"


def _session(row: dict[str, float]) -> int:
    return int(row.get("session", 1) or 1)


def epoch_timing(rows: Sequence[dict[str, float]]) -> EpochTiming:
    """Split metrics.csv rows into cold epochs (first of a session) and steady-state epochs."""
    cold, steady = [], []
    seen: set[int] = set()
    for r in rows:
        (steady if _session(r) in seen else cold).append(r)
        seen.add(_session(r))
    per_step = [r["train_seconds"] / r["steps"] for r in steady if r.get("steps")]
    return EpochTiming([int(r["epoch"]) for r in cold], [r["train_seconds"] for r in cold],
                       [int(r["epoch"]) for r in steady], [r["train_seconds"] for r in steady], per_step,
                       [r["samples_per_s"] for r in steady])


def resume_points(rows: Sequence[dict[str, float]]) -> list[float]:
    """Epoch positions (between two epochs) where a later session resumed the run."""
    return [int(a["epoch"]) + 0.5 for a, b in zip(rows, rows[1:]) if _session(b) != _session(a)]

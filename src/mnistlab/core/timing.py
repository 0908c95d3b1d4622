"""The one timing module: how mnistlab times work, repeats it, and says what the numbers support.

Every timed block (a training epoch, an evaluation, a warm-up, a bench's steps, a probe, a speedrun's
seed) is a `Timer`: a synchronisation of the device at its start and end, the wall clock between.
Every measurement (bench, levers bench, scaling, speedrun, the trainer's epochs) states a time as a
`Spread` of repeats, judges it with ONE stability rule (`stability`), and states a comparison as a
`Ratio` of paired, interleaved repeats with one wording (`Ratio.words`). A new measurement that
needs another rule or another wording is a change here, not in its own module.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from mnistlab.core.device import synchronize

UNSTABLE_SPREAD = 0.10  # (max - min) / median of the repeats beyond which a figure is not trusted
ONE_REPEAT = "1 repeat, no range (a single measurement is no evidence of a stable figure)"

Load = Mapping[str, Mapping[str, Any] | None]  # {"start": load_snapshot(), "end": ...}
_SNAPSHOT = {"load_avg_1m": "number?", "cpu_count": "int?"}
LOAD_SCHEMA = {"start?": _SNAPSHOT, "end?": _SNAPSHOT}  # a result's `load`, as core/schema.py checks it


C = TypeVar("C")


@dataclass(frozen=True)
class Stability:
    """Whether a figure can be trusted; `reason` says why not, in words starting with 'unstable:'."""

    stable: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"stable": self.stable, "reason": self.reason}


STABLE = Stability(True)


@dataclass(frozen=True)
class Spread:
    """Repeated measurements of one thing: median, min, max, count."""

    median: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(0.0, 0.0, 0.0, 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    @property
    def rel_range(self) -> float:
        """(max - min) / median: 0.1 means the repeats span 10% of their median."""
        return (self.max - self.min) / self.median if self.median > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n, "rel_range": self.rel_range}


def is_busy(load_1m: float | None, cores: int | None) -> bool:
    """The machine was busy: its 1-minute load average exceeded its logical cores (the load includes
    this process's own threads)."""
    if load_1m is None or not cores:
        return False
    return load_1m > cores


def busy_words(load: Load | None) -> str | None:
    """The fact that the machine was busy at the start or the end of a measurement, in words, or None
    (also where the OS has no load average: no claim either way)."""
    snaps = [
        (w, s)
        for w, s in (load or {}).items()
        if w in ("start", "end") and s and s.get("load_avg_1m") is not None and s.get("cpu_count")
    ]
    if not any(is_busy(s["load_avg_1m"], s["cpu_count"]) for _, s in snaps):
        return None
    said = ", ".join(f"{s['load_avg_1m']:.1f} at the {w}" for w, s in snaps)
    return (
        f"another process used the CPU during this measurement (load average {said}, "
        f"on {snaps[0][1]['cpu_count']} cores)"
    )


def _judged(why: list[str], advice: str) -> Stability:
    return Stability(False, f"unstable: {'; '.join(why)}; {advice}") if why else STABLE


def machine_stability(load: Load | None) -> Stability:
    """The rule's load part alone: a whole run's warning."""
    busy = busy_words(load)
    return _judged([busy] if busy else [], "rerun on a quiet machine")


def _over(rel: float) -> str:
    """A spread above UNSTABLE_SPREAD as a percentage with the digits that show it above: 10.4%, not 10%."""
    for digits in range(4):
        text = f"{rel * 100:.{digits}f}"
        if float(text) > UNSTABLE_SPREAD * 100:
            return f"{text}%"
    return f"{rel:.4%}"


def stability(values: Sequence[float], load: Load | None = None) -> Stability:
    """THE stability rule. Not stable: no repeat, a single repeat (no range to judge), repeats that
    spread over more than UNSTABLE_SPREAD of their median, or a machine busier than its cores
    (the load average at the start or end of the measurement). The reason names every one that holds."""
    s = Spread.of(values)
    why = []
    if s.n == 0:
        why.append("not measured")
    elif s.n == 1:
        why.append(ONE_REPEAT)
    elif s.rel_range > UNSTABLE_SPREAD:
        why.append(
            f"its {s.n} repeats spread over {_over(s.rel_range)} of their median (more than {UNSTABLE_SPREAD:.0%})"
        )
    busy = busy_words(load)
    if busy:
        why.append(busy)
    elif s.n > 1 and why:
        why.append("another process probably used the CPU")
    advice = (
        "rerun with 3 or more repeats (--repeats; --seeds for a speedrun)" if s.n == 1 else "rerun on a quiet machine"
    )
    return _judged(why, advice)


class Repeats:
    """Repeated timings of one thing (`times`, and the `load` they ran under): their Spread, and their
    stability by the one rule. Every timed result is one: a bench cell's steps, a speedrun's seeds, a
    run's steady-state epochs."""

    load: Load

    @property
    def times(self) -> Sequence[float]:
        raise NotImplementedError

    @property
    def spread(self) -> Spread:
        return Spread.of(self.times)

    @property
    def stability(self) -> Stability:
        return stability(self.times, self.load)


class TimedSteps(Repeats):
    """A cell of repeated step timings (bench, levers bench, scaling): `step_s`, one per repeat."""

    step_s: list[float]

    @property
    def times(self) -> Sequence[float]:
        return self.step_s

    @property
    def step(self) -> Spread:
        return self.spread

    @property
    def step_median_s(self) -> float:
        return self.spread.median


@dataclass(frozen=True)
class Ratio:
    """slow / fast from paired repeats: repeat i of both ran next to each other (interleaved), so a
    change in the machine's load hits both alike. >1: `fast` is faster. Its figure (`median`) is the
    median of the paired ratios, which is not the ratio of the two medians a table shows beside it; the
    words say which is which and give both (`of_medians`)."""

    ratios: tuple[float, ...]
    stability: Stability
    of_medians: float | None = None  # median(slow) / median(fast); None: not known (made from ratios alone)

    @classmethod
    def paired(cls, slow: Sequence[float], fast: Sequence[float], load: Load | None = None) -> Ratio:
        ratios = tuple(a / b for a, b in zip(slow, fast, strict=False) if b > 0)
        fast_median = statistics.median(fast) if fast else 0.0
        of_medians = statistics.median(slow) / fast_median if slow and fast_median > 0 else None
        return cls(ratios, stability(ratios, load), of_medians)

    @property
    def spread(self) -> Spread:
        return Spread.of(self.ratios)

    @property
    def median(self) -> float:
        return self.spread.median

    def _of_medians_words(self, slower: bool) -> str:
        m = self.of_medians
        if m is None or m <= 0:
            return ""
        return f"; ratio of the medians {1 / m:.1f}x" if slower else f"; ratio of the medians {m:.1f}x"

    def words(self) -> str:
        """'12.0x faster (median of 5 paired ratios, 9.1-14.2x; ratio of the medians 12.3x)'; below 1 said the
        other way round ('1.4x slower'), never '0.7x faster'; a range that straddles 1: 'not clearly different'."""
        s = self.spread
        if s.n == 0:
            return "not measured"
        if s.n == 1:
            return (
                f"{s.median:.1f}x faster (1 repeat, no range)"
                if s.median >= 1
                else f"{1 / s.median:.1f}x slower (1 repeat, no range)"
            )
        what = f"median of {s.n} paired ratios"
        if s.min >= 1:
            return f"{s.median:.1f}x faster ({what}, {s.min:.1f}\u2013{s.max:.1f}x{self._of_medians_words(False)})"
        if s.max <= 1:
            return (
                f"{1 / s.median:.1f}x slower ({what}, {1 / s.max:.1f}\u2013{1 / s.min:.1f}x"
                f"{self._of_medians_words(True)})"
            )
        m = f" (ratio of the medians {self.of_medians:.2f})" if self.of_medians else ""
        return (
            f"not clearly different: from {1 / s.min:.2f}x slower to {s.max:.2f}x faster over {s.n} paired repeats{m}"
        )

    def marked(self) -> str:
        """The words, and why they are not to be trusted when they are not."""
        return self.words() + ("" if self.stability.stable else f" [{self.stability.reason}]")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ratios": list(self.ratios),
            "spread": self.spread.to_dict(),
            "of_medians": self.of_medians,
            "words": self.words(),
            "stability": self.stability.to_dict(),
        }


class Timer:
    """`with Timer(device) as t: work()`, then `t.seconds`: the device synchronised at both ends (its
    queued work is in the time), the wall clock between. `lap()` synchronises and reads the time so far;
    `already`: seconds counted before (an epoch resumed from a mid-epoch checkpoint)."""

    def __init__(self, device: torch.device | None = None, already: float = 0.0) -> None:
        self.device, self.already, self.seconds = device, already, 0.0

    def start(self) -> Timer:
        """Start without a `with` block (a long loop that reads `lap()` as it goes)."""
        if self.device is not None:
            synchronize(self.device)
        self._t0 = time.perf_counter() - self.already
        return self

    def __enter__(self) -> Timer:
        return self.start()

    def lap(self) -> float:
        if self.device is not None:
            synchronize(self.device)
        return time.perf_counter() - self._t0

    def __exit__(self, *exc: object) -> None:
        self.seconds = self.lap() if exc[0] is None else time.perf_counter() - self._t0


def time_steps(step: Callable[[], Any], n: int, device: torch.device) -> float:
    """Seconds per step of `n` free-running calls of `step`, synchronised at both ends only."""
    with Timer(device) as t:
        for _ in range(n):
            step()
    return t.seconds / n


def best_rate(fn: Callable[[], Any], work: float, device: torch.device, seconds: float) -> float:
    """The best work/second of `fn` over repeated timings for `seconds` (after one untimed call): a ceiling
    probe's figure, the fastest the device was seen to do it."""
    fn()
    best = 0.0
    with Timer() as budget:
        while budget.lap() < seconds:
            with Timer(device) as t:
                fn()
            best = max(best, work / max(t.seconds, 1e-9))
    return best


def interleave(
    cells: Sequence[C], *, warm_up: Callable[[C], None], time_once: Callable[[C], float], repeats: int
) -> list[list[float]]:
    """Warm every cell up, then time the repeats interleaved (A B A B ...: repeat 1 of every cell,
    then repeat 2 of every cell), so that a drift in the machine's load hits every cell alike.
    Returns each cell's times, in the order of `cells`."""
    for c in cells:
        warm_up(c)
    times: list[list[float]] = [[] for _ in cells]
    for _ in range(repeats):
        for c, out in zip(cells, times, strict=True):
            out.append(time_once(c))
    return times

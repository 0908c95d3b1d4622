"""One timed training step against its device: the arithmetic that every bench cell shares.

A cell of the bench (measure/bench.py) and of the levers bench (measure/levers_bench.py) is a training
step timed in repeats (core/timing.py's TimedSteps) with its counted cost (FLOPs, bytes, operations:
measure/ceilings.py) and its device's measured ceilings. From those alone: the FLOP/s it reached, the
ceiling (raised to what the step reached if it beat every probe, so that no utilisation exceeds 100%),
the utilisation, and its floors. A cell's file holds the measurements; these are recomputed on reading.
"""

from __future__ import annotations

from mnistlab.core.schema import MAX_FLOP_RATE, NONEMPTY, Range
from mnistlab.core.timing import TimedSteps
from mnistlab.measure.ceilings import Floors

# the fields every step cell's file holds, with their ranges (core/schema.py)
STEP_CELL_SCHEMA = {
    "model": "text",
    "device": "text",
    "batch_size": "positive count",
    "steps_timed": "count",
    "step_s": ["positive seconds"],
    "train_step_flops": "count",
    "peak_flops_per_s": Range(0, MAX_FLOP_RATE),  # 0: a lever set not measured here
    "train_step_bytes?": "count",
    "train_step_ops?": "count",
    "bandwidth_bytes_per_s?": "byte rate",
    "op_cost_s?": "seconds",
}
TIMED_STEPS = ["positive seconds", NONEMPTY]  # a cell that was measured has at least one repeat


class StepCell(TimedSteps):
    """A cell provides `step_s`, `load`, its step's cost and its device's ceilings (as fields)."""

    train_step_flops: int
    peak_flops_per_s: float  # the device's measured compute ceiling, for the dtype the step computes in
    train_step_bytes: int  # 0: not counted
    train_step_ops: int
    bandwidth_bytes_per_s: float
    op_cost_s: float

    @property
    def achieved_flops_per_s(self) -> float:
        med = self.step_median_s
        return self.train_step_flops / med if med > 0 else 0.0

    @property
    def ceiling_raised(self) -> bool:
        """The step ran faster than every probe of the device: its ceiling is what this step reached."""
        return self.achieved_flops_per_s > self.peak_flops_per_s

    @property
    def ceiling_flops_per_s(self) -> float:
        return max(self.peak_flops_per_s, self.achieved_flops_per_s)

    @property
    def utilisation(self) -> float:
        """Of the measured ceiling, raised to what the step reached if it reached more: never above 100%."""
        ceiling = self.ceiling_flops_per_s
        return self.achieved_flops_per_s / ceiling if ceiling > 0 else 0.0

    @property
    def floors(self) -> Floors | None:
        """The least time the step could take: arithmetic, memory traffic, per-operation costs (None: the
        cost or the ceilings were not counted, as in a file from before them)."""
        if not (self.train_step_ops and self.bandwidth_bytes_per_s and self.op_cost_s and self.step_s):
            return None
        ceiling = self.ceiling_flops_per_s
        return Floors(
            self.train_step_flops / ceiling if ceiling > 0 else 0.0,
            self.train_step_bytes / self.bandwidth_bytes_per_s,
            self.train_step_ops * self.op_cost_s,
            self.step_median_s,
            self.step.rel_range,
        )

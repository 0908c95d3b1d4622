"""`mnistlab speedrun`: train a fast recipe from scratch to a target test accuracy, over N seeds.

Protocol (docs/speedrun.md): the official 60k training set and the 10k test set are put on the
device once (timed apart: `data_s`). Each seed builds a fresh model and runs a short warm-up
(first-call costs: oneDNN/cuDNN kernel choice, torch.compile, CUDA graph capture), whose effect
on weights and optimizer state is undone; it is timed apart (`warmup_s`) and reported. The timed
part is everything else: every training step of every epoch, the schedule, and the evaluation
of the whole test set, from a synchronised start to a synchronised end. The seeds' times are a
Spread judged by core/timing.py's one stability rule (with the run's load).

Beside the time, and never inside it: a run's FLOPs (one counted training step with the recipe's Adam,
every step of the epochs, one forward pass over the test set) and the device's compute ceiling
(measure/ceilings.py), both taken once after seed 0 (`ceiling_s`), so the distance to the floor is a
number; a one-sided t-test of mean accuracy > target; and, from the command line, a cold time from the
process's start to seed 0's result (`cold_s`), which the count and the probe are not in.
"""

from __future__ import annotations

import statistics
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from mnistlab.core import progress
from mnistlab.core.defaults import COMPILE_MODES, EVAL_BATCH_SIZE, PRECISIONS
from mnistlab.core.device import device_name
from mnistlab.core.environment import environment, load_snapshot
from mnistlab.core.errors import CheckpointError, first_line
from mnistlab.core.faults import kill_point
from mnistlab.core.logs import lines
from mnistlab.core.richdisplay import html_table
from mnistlab.core.schema import NONEMPTY, check, maybe, one_of
from mnistlab.core.timing import LOAD_SCHEMA, Repeats, Timer, machine_stability
from mnistlab.core.words import percent
from mnistlab.data.datasets import DatasetSpec, DataShape
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.measure.ceilings import count_forward, count_step, measure_ceilings
from mnistlab.measure.table import LINE_WIDTH, fit_width, text_table
from mnistlab.training.levers import Levers
from mnistlab.training.models import count_parameters, create_model
from mnistlab.training.recipe import (
    DEFAULT_LEVERS,
    Recipe,
    SeedResult,
    default_levers,
    load_to_device,
    recipe_optimizer,
    run_seed,
)

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["DEFAULT_LEVERS", "Recipe", "SeedResult", "SpeedrunResult", "default_levers", "speedrun"]
COLD = {
    "process start": "the interpreter's start, imports, reading and checking the data, data to the device, "
    "warm-up and seed 0's training and test evaluation",
    "mnistlab import": "mnistlab's import (this platform has no process start time to read), reading and "
    "checking the data, data to the device, warm-up and seed 0's training and test "
    "evaluation",
}
# every value the report prints or divides by has its range (core/schema.py's ranged names)
SEED_SCHEMA = {
    "seed": "count",
    "accuracy": "percent",
    "correct": "count",
    "total": "positive count",
    "seconds": "positive seconds",
    "train_s": "seconds",
    "eval_s": "seconds",
    "warmup_s": "seconds",
    "final_loss": "number",
}
SPEEDRUN_SCHEMA = {
    "recipe": {
        "model": "text",
        "batch_size": "positive count",
        "epochs": "positive count",
        "max_lr": "positive",
        "pct_start": "fraction",
        "warmup_steps": "count",
        "label_smoothing?": "fraction",
        "adam_beta2?": "fraction",
        "epoch_fraction?": "fraction",
        "test_shift?": "count",
        "test_shift_below?": "fraction",
    },
    "levers": {
        "precision": one_of(PRECISIONS),
        "channels_last": "bool",
        "compile": one_of(COMPILE_MODES),
        "cuda_graphs": "bool",
    },
    "device": "text",
    "device_name": "text",
    "target": "percent",
    "summary": {"data_s": "seconds"},
    "train_samples": "positive count",
    "test_samples": "positive count",
    "model_parameters?": "count",
    "seeds_planned?": "count",
    "runs": [SEED_SCHEMA, NONEMPTY],
    "env?": {"*": "any"},
    "load?": LOAD_SCHEMA,
    # added with issue 20's floor; absent from older files, which still read
    "flops?": {"step": "count", "train": "positive count", "eval": "positive count"},
    "ceiling?": {"flops_per_s": "flop rate", "dtype": "text", "probe": "text"},
    "ceiling_s?": "seconds?",
    "cold_s?": "positive seconds?",
    "cold_from?": maybe(one_of(tuple(COLD))),
    "not_measured?": {"*": "text"},
    "dataset?": "text?",
}
TIMED = "training steps, schedule and the whole test-set evaluation; not data_s or warmup_s"
DEFAULT_SEEDS = 10
DEFAULT_TARGET = 99.0  # percent of the 10,000 test images
COUNTED = (
    "torch.utils.flop_counter: matmuls and convolutions, forward and backward; not elementwise work, "
    "normalisation or Adam's update, which it has no formula for; the evaluation counted as one forward "
    "pass per test image, not the shifted views of the images the model is unsure of (recipe.test_shift: "
    "about 2% of MNIST's validation images, 2 views each)"
)
NOT_FRESH = "not measured: not a fresh process (only the command line records it)"
OLDER = "not recorded (an older speedrun.json)"
CEILING_PROBE_S = 0.1  # per probe of measure_ceilings: about 1-2 s in all on a CPU


@dataclass(frozen=True)
class RunFlops:
    """One run's arithmetic, as COUNTED says. The same for every seed: same recipe, same data."""

    step: int  # one training step at the recipe's batch
    train: int  # every step of every epoch, a short last batch counted at its own size
    eval: int  # one forward pass over the whole test set

    @property
    def run(self) -> int:
        return self.train + self.eval


def count_run(
    recipe: Recipe, shape: DataShape, train_samples: int, test_samples: int, test_batch: int = EVAL_BATCH_SIZE
) -> RunFlops:
    """A run's FLOPs, counted on the CPU by measure/ceilings.py (a step's FLOPs are the device's too)."""

    def adam(model: torch.nn.Module) -> torch.optim.Adam:
        return recipe_optimizer(model, recipe, Levers(), torch.device("cpu"))

    full, rest = divmod(train_samples, recipe.batch_size)
    trained = recipe.batches_per_epoch(full + (rest > 0))  # the short last batch comes last, if it comes
    step = count_step(recipe.model, shape, recipe.batch_size, adam).flops if full else 0
    last = count_step(recipe.model, shape, rest, adam).flops if rest and trained > full else 0
    eval_full, eval_rest = divmod(test_samples, test_batch)
    forward = (eval_full * count_forward(recipe.model, shape, test_batch) if eval_full else 0) + (
        count_forward(recipe.model, shape, eval_rest) if eval_rest else 0
    )
    return RunFlops(step, recipe.epochs * (min(trained, full) * step + last), forward)


@dataclass(frozen=True)
class Ceiling:
    """The device's measured compute ceiling (measure_ceilings): what a run's FLOP/s are a fraction of."""

    flops_per_s: float
    dtype: str  # bfloat16 on a CPU whatever the levers; on a GPU the levers' compute dtype
    probe: str  # which probe gave it, e.g. 'matmul 1024x1024 @ 1024x1024'

    def words(self) -> str:
        return f"the measured {self.dtype} compute ceiling, {self.flops_per_s / 1e9:,.1f} GFLOP/s ({self.probe})"


def ceiling_dtype(device: torch.device, levers: Levers) -> torch.dtype:
    """bfloat16 on a CPU, its fastest arithmetic (AMX, AVX-512 BF16) and the recipe's there, so one
    denominator for every lever; on a GPU the dtype the levers compute in."""
    return torch.bfloat16 if device.type == "cpu" else levers.compute_dtype


@dataclass(frozen=True)
class TargetTest:
    """One-sided one-sample t-test over the seeds' accuracies: H0 mean <= target, H1 mean > target.
    `p`: the chance, were the true mean exactly the target, of a t at least as large as `t` (smaller
    still for any lower mean). None, with `why_not`, when no test can be made."""

    n: int
    t: float | None
    p: float | None
    why_not: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"alternative": "mean accuracy > target", **asdict(self)}


def target_test(accuracies: Sequence[float], target: float) -> TargetTest:
    n = len(accuracies)
    if n < 2:
        return TargetTest(n, None, None, "1 seed: no spread to test with")
    if len(set(accuracies)) == 1:
        return TargetTest(
            n, None, None, f"{'both' if n == 2 else f'all {n}'} seeds have the same accuracy: zero spread, no t"
        )
    from scipy.stats import ttest_1samp  # scipy is heavy: imported when a test is made

    r = ttest_1samp(list(accuracies), target, alternative="greater")
    return TargetTest(n, float(r.statistic), float(r.pvalue))


def p_value_text(p: float) -> str:
    """Two significant digits, but never '1' (0.996 rounded: a certainty no test gives): '> 0.99'."""
    text = f"{p:.2g}"
    return "> 0.99" if text == "1" else text


def p_words(p: float) -> str:
    """'= 0.02' or '> 0.99', to follow 'p '."""
    text = p_value_text(p)
    return text if text.startswith(">") else f"= {text}"


@dataclass
class SpeedrunResult(Repeats):
    FILE: ClassVar[str] = "speedrun.json"

    recipe: Recipe
    levers: Levers
    device: str
    device_name: str
    target: float
    data_s: float  # data to the device, once, not in any run's time
    train_samples: int
    test_samples: int
    parameters: int = 0  # the model's, so that a record names the network, not only its registry name
    seeds: list[SeedResult] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)  # {"start": load_snapshot(), "end": ...}
    seeds_planned: int = 0  # asked for; more than len(seeds) when a stop cut the speedrun short
    flops: RunFlops | None = None  # None: not counted (not_measured["flops"] says why)
    ceiling: Ceiling | None = None
    ceiling_s: float | None = None  # the FLOP count and the ceiling probe, once after seed 0, in no other time
    cold_s: float | None = None  # from cold_from to seed 0's result
    cold_from: str | None = None  # "process start" or "mnistlab import"
    not_measured: dict[str, str] = field(default_factory=dict)  # "flops", "ceiling", "cold": why not
    dataset: str | None = None  # its name; None: not recorded (an older speedrun.json)

    @property
    def complete(self) -> bool:
        return len(self.seeds) >= self.seeds_planned

    @property
    def machine_busy(self) -> str | None:
        return machine_stability(self.load).reason

    @property
    def accuracies(self) -> list[float]:
        return [s.accuracy for s in self.seeds]

    @property
    def times(self) -> list[float]:  # the seeds' timed runs: their spread and stability are Repeats'
        return [s.seconds for s in self.seeds]

    @property
    def accuracy_mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def accuracy_std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.seeds) > 1 else 0.0

    @property
    def reached(self) -> int:
        return sum(a >= self.target for a in self.accuracies)

    @property
    def target_test(self) -> TargetTest:
        return target_test(self.accuracies, self.target)

    def flops_per_s(self, seed: SeedResult) -> float | None:
        return self.flops.run / seed.seconds if self.flops else None

    def ceiling_fraction(self, seed: SeedResult) -> float | None:
        achieved = self.flops_per_s(seed)
        return achieved / self.ceiling.flops_per_s if achieved is not None and self.ceiling else None

    @property
    def floor_s(self) -> float | None:
        """A run's FLOPs at the ceiling: the least time the arithmetic alone could take."""
        return self.flops.run / self.ceiling.flops_per_s if self.flops and self.ceiling else None

    def why_not(self, what: str) -> str:
        return self.not_measured.get(what, "not measured")

    def summary(self) -> dict[str, Any]:
        def median(values: list[float | None]) -> float | None:  # None: no FLOPs (or no ceiling) to divide
            known = [v for v in values if v is not None]
            return statistics.median(known) if known else None

        return {
            "seeds": len(self.seeds),
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "reached_target": self.reached,
            "fraction_reached": self.reached / len(self.seeds),
            "target_test": self.target_test.to_dict(),
            "time_median_s": self.spread.median,
            "time_min_s": self.spread.min,
            "time_max_s": self.spread.max,
            "time_stability": self.stability.to_dict(),
            "warmup_median_s": statistics.median(s.warmup_s for s in self.seeds),
            "data_s": self.data_s,
            "flops_per_run": self.flops.run if self.flops else None,
            "flops_per_s_median": median([self.flops_per_s(s) for s in self.seeds]),
            "ceiling_fraction_median": median([self.ceiling_fraction(s) for s in self.seeds]),
            "floor_s": self.floor_s,
            "ceiling_s": self.ceiling_s,
            "cold_s": self.cold_s,
        }

    def to_dict(self) -> dict[str, Any]:
        runs = [
            {**asdict(s), "flops_per_s": self.flops_per_s(s), "ceiling_fraction": self.ceiling_fraction(s)}
            for s in self.seeds
        ]
        return {
            "recipe": self.recipe.to_dict(),
            "levers": asdict(self.levers),
            "levers_text": self.levers.describe(),
            "device": self.device,
            "device_name": self.device_name,
            "dataset": self.dataset,
            "target": self.target,
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
            "model_parameters": self.parameters,
            "timed": TIMED,
            "summary": self.summary(),
            "runs": runs,
            "env": self.env,
            "load": self.load,
            "machine_busy": self.machine_busy,
            "seeds_planned": self.seeds_planned,
            **({"flops": asdict(self.flops), "flops_counted": COUNTED} if self.flops else {}),
            **({"ceiling": asdict(self.ceiling)} if self.ceiling else {}),
            "ceiling_s": self.ceiling_s,
            "cold_s": self.cold_s,
            "cold_from": self.cold_from,
            **({"cold_includes": COLD[self.cold_from]} if self.cold_from in COLD else {}),
            "not_measured": self.not_measured,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> SpeedrunResult:
        """A validated speedrun.json (one CheckpointError line naming the file and field)."""
        check(data, SPEEDRUN_SCHEMA, where)
        _check_across_fields(data, where)

        def fields(d: dict[str, Any], schema: Any) -> dict[str, Any]:  # optional keys where present
            return {k.rstrip("?"): d[k.rstrip("?")] for k in schema if k.rstrip("?") in d}

        # what a recipe without the key trained with
        older = {"label_smoothing": 0.0, "adam_beta2": 0.999, "epoch_fraction": 1.0, "test_shift": 0}
        return cls(
            Recipe(**{**older, **fields(data["recipe"], SPEEDRUN_SCHEMA["recipe"])}),
            Levers(**fields(data["levers"], SPEEDRUN_SCHEMA["levers"])),
            data["device"],
            data["device_name"],
            data["target"],
            data["summary"]["data_s"],
            data["train_samples"],
            data["test_samples"],
            data.get("model_parameters", 0),
            [SeedResult(**fields(r, SEED_SCHEMA)) for r in data["runs"]],
            dict(data.get("env") or {}),
            dict(data.get("load") or {}),
            data.get("seeds_planned", len(data["runs"])),
            RunFlops(**fields(data["flops"], SPEEDRUN_SCHEMA["flops?"])) if "flops" in data else None,
            Ceiling(**fields(data["ceiling"], SPEEDRUN_SCHEMA["ceiling?"])) if "ceiling" in data else None,
            data.get("ceiling_s"),
            data.get("cold_s"),
            data.get("cold_from"),
            dict(data.get("not_measured", dict.fromkeys(("flops", "ceiling", "cold"), OLDER))),
            data.get("dataset"),
        )

    # --- words, made here from the fields and nowhere else -------------------------------------------

    def test_words(self) -> str:
        """'mean above 99%? t = 5.10, p = 0.0003 (one-sided t-test over 10 seeds; ...)', or why there is none.
        A question: the mean may be below the target (t < 0, p near 1)."""
        t = self.target_test
        if t.p is None:
            return f"no t-test of a mean above {self.target:g}%: {t.why_not}"
        return (
            f"mean above {self.target:g}%? t = {t.t:.2f}, p {p_words(t.p)} (one-sided t-test over {t.n} seeds; "
            f"p is the chance of a t at least this large if the true mean were {self.target:g}%, smaller still "
            f"for any lower mean)"
        )

    def floor_words(self) -> str:
        """'floor 0.09 s (the counted FLOPs at the ceiling)', or why there is none."""
        if self.floor_s is not None:
            return f"floor {self.floor_s:.2g} s (the counted FLOPs at the ceiling)"
        return (
            "floor unknown ("
            + (f"FLOPs {self.why_not('flops')}" if self.flops is None else f"ceiling {self.why_not('ceiling')}")
            + ")"
        )

    def flops_words(self) -> str:
        """FLOPs per run and the median share of the ceiling they were done at, denominator named."""
        if self.flops is None:
            return f"FLOPs {self.why_not('flops')}"
        s = self.summary()
        words = f"{self.flops.run / 1e9:,.2f} GFLOP per run, median {s['flops_per_s_median'] / 1e9:,.1f} GFLOP/s"
        if self.ceiling is None:
            return f"{words}; ceiling {self.why_not('ceiling')}"
        return f"{words} = {percent(s['ceiling_fraction_median'])} of {self.ceiling.words()}"

    def cold_words(self) -> str:
        if self.cold_s is None:
            return f"cold start {self.why_not('cold')}"
        return f"cold {self.cold_s:.2f} s from {self.cold_from} to seed 0's result"

    def not_timed_words(self) -> str:
        s = self.summary()
        probe = f", FLOP count + ceiling probe {self.ceiling_s:.2f} s once" if self.ceiling_s is not None else ""
        return f"data to device {s['data_s']:.2f} s once, warm-up {s['warmup_median_s']:.2f} s per seed{probe}"

    def rows(self) -> list[tuple[str, str]]:
        """The result as (what, value) rows: the command line's table, a notebook's, the report's."""
        s, t = self.summary(), self.target_test
        on = f"{self.dataset}, {self.device}" if self.dataset else self.device
        stopped = "" if self.complete else f" (stopped after {s['seeds']} of {self.seeds_planned} seeds)"
        cold = self.cold_words() + (f" ({COLD[self.cold_from]})" if self.cold_from in COLD else "")
        return [
            ("speedrun", f"{self.recipe.model} on {on} ({self.device_name}); {self.levers.describe()}"),
            ("seeds", f"{s['reached_target']} of {s['seeds']} reached {self.target:g}%{stopped}"),
            ("test accuracy", _accuracy_words(s)),
            (
                f"mean above {self.target:g}%?",
                f"no t-test: {t.why_not}"
                if t.p is None
                else f"t = {t.t:.2f}, p {p_words(t.p)} (one-sided t-test over {t.n} seeds)",
            ),
            ("time to train + evaluate", _time_words(s)),
            ("floor", self.floor_words()),
            ("arithmetic", self.flops_words()),
            ("cold start", cold),
            ("not timed", self.not_timed_words()),
            ("stability", "stable" if self.stability.stable else self.stability.reason or "unstable"),
        ]

    def table(self, width: int = LINE_WIDTH) -> str:
        """The summary a terminal shows: what ran, then one small table (seeds, accuracy mean ± std, the t-test's
        p, time median and range, floor, stability), then why the time is unstable where it is; no line wider than
        `width`. The full rows (cold start, arithmetic, what is not timed) are `rows()`: a notebook's table, the
        report."""
        s, t = self.summary(), self.target_test
        on = f"{self.dataset}, {self.device}" if self.dataset else self.device
        stopped = "" if self.complete else f" (stopped after {s['seeds']} of {self.seeds_planned} seeds)"
        accuracy = (
            f"{s['accuracy_mean']:.2f}%"
            if s["seeds"] == 1
            else f"{s['accuracy_mean']:.2f}% \u00b1 {s['accuracy_std']:.2f}"
        )
        time = (
            f"{s['time_median_s']:.2f} s"
            if s["seeds"] == 1
            else f"{s['time_median_s']:.2f} s ({s['time_min_s']:.2f}-{s['time_max_s']:.2f})"
        )
        table = text_table(
            [
                "seeds",
                f"reached {self.target:g}%",
                "accuracy mean \u00b1 std",
                f"p (mean > {self.target:g}%)",
                "time median (range)",
                "floor",
                "cold start",
                "stability",
            ],
            [
                [
                    str(s["seeds"]),
                    f"{s['reached_target']}/{s['seeds']}",
                    accuracy,
                    "-" if t.p is None else p_value_text(t.p),
                    time,
                    "-" if self.floor_s is None else f"{self.floor_s:.2g} s",
                    "-" if self.cold_s is None else f"{self.cold_s:.2f} s",
                    "stable" if self.stability.stable else "unstable",
                ]
            ],
            left=0,
            gap=3,
        )
        lines = [
            f"speedrun: {self.recipe.model} on {on} ({self.device_name}); {self.levers.describe()}{stopped}",
            table,
        ]
        if not self.stability.stable and self.stability.reason:
            lines.append(f"time {self.stability.reason}")
        return fit_width("\n".join(lines), width)

    def details(self, width: int = LINE_WIDTH) -> str:
        """Every row as two columns of text, no line wider than `width` (a long value wraps under itself)."""
        rows = self.rows()
        left = max(len(k) for k, _ in rows) + 2
        return "\n".join(
            textwrap.fill(v, width, initial_indent=f"{k:<{left}}", subsequent_indent=" " * left) for k, v in rows
        )

    def _repr_html_(self) -> str:
        return html_table("speedrun", self.rows())


def _time_words(s: dict[str, Any]) -> str:
    """'median 0.78 s (range 0.73-0.89 s)'; one seed's time has no median or range to state."""
    if s["seeds"] == 1:
        return f"{s['time_median_s']:.2f} s (1 seed, no range)"
    return f"median {s['time_median_s']:.2f} s (range {s['time_min_s']:.2f}-{s['time_max_s']:.2f} s)"


def _check_across_fields(data: dict[str, Any], where: str) -> None:
    """What no one field's range can say: a seed's count within its total, and a cold time that holds seed
    0's warm-up and timed run and says where it started (CheckpointError, one line)."""
    for i, run in enumerate(data["runs"]):
        if run["correct"] > run["total"]:
            raise CheckpointError(
                f"{where}: field 'runs'[{i}].correct: {run['correct']} is more than its total {run['total']}"
            )
    cold, start = data.get("cold_s"), data.get("cold_from")
    if cold is not None and start is None:
        raise CheckpointError(
            f"{where}: field 'cold_from': a cold time runs from one of {', '.join(map(repr, COLD))}, found None"
        )
    first = data["runs"][0]
    if cold is not None and cold < first["seconds"] + first["warmup_s"]:
        raise CheckpointError(
            f"{where}: field 'cold_s': {cold:g} s is less than seed 0's warm-up and run "
            f"({first['warmup_s']:g} + {first['seconds']:g} s), which it includes"
        )


def _accuracy_words(s: dict[str, Any]) -> str:
    """'99.18% ± 0.03 over 10 seeds'; one seed has no spread to state."""
    if s["seeds"] == 1:
        return f"{s['accuracy_mean']:.2f}% over 1 seed (no spread with one)"
    return f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f} over {s['seeds']} seeds"


def measure_floor(
    result: SpeedrunResult, shape: DataShape, train: DeviceLoader, test: DeviceLoader, device: torch.device
) -> None:
    """Count a run's FLOPs and measure the ceiling into `result` (once, outside every timed part); a
    failure of either (a user's model the counter cannot run, a device without the dtype) is recorded
    as a reason, never raised: the seeds' results stand without it."""
    kill_point("speedrun-floor")
    timer = Timer(device).start()
    try:
        flops = count_run(result.recipe, shape, train.num_samples, test.num_samples, test.batch_size)
        if not (flops.train > 0 and flops.eval > 0):  # a floor of 0 s; the file's reader refuses it
            raise ValueError("the counter found no matmul or convolution to count")
        result.flops = flops
    except Exception as e:  # noqa: BLE001 - any failure of the count leaves the speedrun's own figures
        result.not_measured["flops"] = f"not counted ({first_line(e)})"
    try:
        c = measure_ceilings(device, ceiling_dtype(device, result.levers), seconds=CEILING_PROBE_S)
        if not c.compute_flops_per_s > 0:  # a denominator, and the file's reader refuses one that is not positive
            raise ValueError(f"the probes measured {c.compute_flops_per_s} FLOP/s")
        result.ceiling = Ceiling(c.compute_flops_per_s, c.dtype, c.best_shape)
    except Exception as e:  # noqa: BLE001 - as above
        result.not_measured["ceiling"] = f"not measured ({first_line(e)})"
    result.ceiling_s = timer.lap()


def speedrun(
    train: RawSplit,
    test: RawSplit,
    spec: DatasetSpec,
    device: torch.device,
    *,
    seeds: int = DEFAULT_SEEDS,
    target: float = DEFAULT_TARGET,
    recipe: Recipe | None = None,
    levers: Levers | None = None,
    log: Callable[[str], None] = _LOG,
    on_seed: Callable[[SpeedrunResult], None] | None = None,
    cold_since: tuple[float, str] | None = None,
) -> SpeedrunResult:
    """`seeds` from-scratch runs; `on_seed(result so far)` after each one, so that a job can keep the
    seeds already finished when a signal stops the rest. `cold_since`: (time.time() of the process's
    start, "process start" or "mnistlab import"; core/processstart.py), given only by a fresh process
    (the command line): the cold time runs from it to seed 0's result. The FLOP count and the ceiling
    probe come after that moment, so they are in neither the cold time nor any seed's."""
    recipe = recipe or Recipe()
    levers = levers or default_levers(device)
    levers.check(device)
    load_start = load_snapshot()
    tr, te, data_s = load_to_device(
        train, test, spec, recipe.batch_size, device, dtype=levers.autocast_dtype or torch.float32
    )
    result = SpeedrunResult(
        recipe,
        levers,
        device.type,
        device_name(device),
        target,
        data_s,
        len(train),
        len(test),
        parameters=count_parameters(create_model(recipe.model, spec.shape)),
        env=environment(),
        seeds_planned=seeds,
        dataset=spec.name,
    )
    if cold_since is None:
        result.not_measured["cold"] = NOT_FRESH
    with progress.bar(seeds, "speedrun seeds", "seed") as bar:
        _seeds(result, recipe, levers, seeds, tr, te, spec, device, bar, log, on_seed, cold_since, load_start)
    return result


def _seeds(
    result: SpeedrunResult,
    recipe: Recipe,
    levers: Levers,
    seeds: int,
    tr: DeviceLoader,
    te: DeviceLoader,
    spec: DatasetSpec,
    device: torch.device,
    bar: Any,
    log: Callable[[str], None],
    on_seed: Callable[[SpeedrunResult], None] | None,
    cold_since: tuple[float, str] | None,
    load_start: Any,
) -> None:
    """The seeds, one after another; the bar moves after each (outside its timed part)."""
    for seed in range(seeds):
        r = run_seed(recipe, levers, seed, tr, te, spec.shape)
        bar.update()
        if seed == 0 and cold_since is not None:
            cold = time.time() - cold_since[0]
            if cold >= r.seconds + r.warmup_s:  # it holds both (the file's reader checks so)
                result.cold_s, result.cold_from = cold, cold_since[1]
            else:  # only a wall clock set back while it ran does this
                result.not_measured["cold"] = "not measured: the wall clock went back during it"
        log(
            f"  seed {seed}: {r.accuracy:.2f}% in {r.seconds:.2f} s (train {r.train_s:.2f} s, test eval "
            f"{r.eval_s:.2f} s; warm-up {r.warmup_s:.2f} s apart)"
        )
        result.seeds.append(r)
        result.load = {"start": load_start, "end": load_snapshot()}
        if on_seed is not None:  # kept before the floor is measured: a stop during it loses no finished seed
            on_seed(result)
        if seed == 0:
            measure_floor(result, spec.shape, tr, te, device)
            log(
                fit_width(
                    f"  FLOPs counted and ceiling probed in {result.ceiling_s:.2f} s, apart: "
                    f"{result.flops_words()}; {result.floor_words()}"
                )
            )
            if on_seed is not None:
                on_seed(result)

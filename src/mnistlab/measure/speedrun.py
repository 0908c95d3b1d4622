"""`mnistlab speedrun`: train a fast recipe from scratch to a target test accuracy, over N seeds.

Protocol (docs/speedrun.md): the official 60k training set and the 10k test set are put on the
device once (timed apart: `data_s`). Each seed builds a fresh model and runs a short warm-up
(first-call costs: oneDNN/cuDNN kernel choice, torch.compile, CUDA graph capture), whose effect
on weights and optimizer state is undone; it is timed apart (`warmup_s`) and reported. The timed
part is everything else: every training step of every epoch, the schedule, and the evaluation
of the whole test set, from a synchronised start to a synchronised end. The seeds' times are a
Spread judged by measure/timing.py's one stability rule (with the run's load).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from mnistlab.core.device import device_name, synchronize
from mnistlab.core.environment import environment, load_snapshot
from mnistlab.core.richdisplay import html_table
from mnistlab.core.schema import NONEMPTY, check_schema
from mnistlab.data.datasets import DataShape, DatasetSpec
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.measure.timing import Spread, Stability, machine_stability, stability
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import Levers, autocast, make_step, prepare_model, warm_up
from mnistlab.training.models import count_parameters, create_model

_SNAPSHOT = {"load_avg_1m": "number?", "cpu_count": "int?"}
SEED_SCHEMA = {"seed": "int", "accuracy": "number", "correct": "int", "total": "int", "seconds": "positive",
               "train_s": "number", "eval_s": "number", "warmup_s": "number", "final_loss": "number"}
SPEEDRUN_SCHEMA = {"recipe": {"model": "text", "batch_size": "int", "epochs": "int", "max_lr": "number",
                              "pct_start": "number", "warmup_steps": "int"},
                   "levers": {"precision": "text", "channels_last": "bool", "compile": "text", "cuda_graphs": "bool"},
                   "device": "text", "device_name": "text", "target": "number", "summary": {"data_s": "number"},
                   "train_samples": "int", "test_samples": "int", "model_parameters?": "int", "seeds_planned?": "int",
                   "runs": [SEED_SCHEMA, NONEMPTY],
                   "env?": {"*": "any"}, "load?": {"start?": _SNAPSHOT, "end?": _SNAPSHOT}}
TIMED = "training steps, schedule and the whole test-set evaluation; not data_s or warmup_s"
DEFAULT_SEEDS = 10
DEFAULT_TARGET = 99.0  # percent of the 10,000 test images


@dataclass(frozen=True)
class Recipe:
    """What is trained: model, optimiser, schedule, batch, epochs. Levers are separate (`Levers`)."""

    model: str = "speednet"
    batch_size: int = 128  # seed 0 measured 98.95% at 128 vs 98.86% at 256 (docs/speedrun.md)
    epochs: int = 1
    max_lr: float = 0.01  # Adam, one-cycle: warm up to max_lr, then anneal to ~0
    pct_start: float = 0.25
    warmup_steps: int = 2  # untimed steps per seed, undone before the timed run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# the recipe's own levers per device: measured best on the CPU (docs/speedrun.md); the GPU's guesses
DEFAULT_LEVERS = {"cpu": Levers(precision="bf16-mixed", channels_last=True),
                  "cuda": Levers(precision="bf16-mixed", channels_last=True, cuda_graphs=True)}


def default_levers(device: torch.device) -> Levers:
    return DEFAULT_LEVERS.get(device.type, Levers())


@dataclass(frozen=True)
class SeedResult:
    seed: int
    accuracy: float  # percent, over the whole test set
    correct: int
    total: int
    seconds: float  # timed: training + full test evaluation
    train_s: float
    eval_s: float
    warmup_s: float  # not in `seconds`: first-call costs, reported apart
    final_loss: float


@dataclass
class SpeedrunResult:
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
    def times(self) -> list[float]:
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
    def time(self) -> Spread:
        return Spread.of(self.times)

    @property
    def time_median(self) -> float:
        return self.time.median

    @property
    def stability(self) -> Stability:
        """The seeds' times judged by the one rule: their range, a single seed, a busy machine."""
        return stability(self.times, self.load)

    def summary(self) -> dict[str, Any]:
        return {
            "seeds": len(self.seeds), "accuracy_mean": self.accuracy_mean, "accuracy_std": self.accuracy_std,
            "reached_target": self.reached, "fraction_reached": self.reached / len(self.seeds),
            "time_median_s": self.time.median, "time_min_s": self.time.min, "time_max_s": self.time.max,
            "time_stability": self.stability.to_dict(),
            "warmup_median_s": statistics.median(s.warmup_s for s in self.seeds), "data_s": self.data_s,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "levers": asdict(self.levers), "levers_text": self.levers.describe(),
                "device": self.device, "device_name": self.device_name, "target": self.target,
                "train_samples": self.train_samples, "test_samples": self.test_samples,
                "model_parameters": self.parameters,
                "timed": TIMED,
                "summary": self.summary(), "runs": [asdict(s) for s in self.seeds], "env": self.env,
                "load": self.load, "machine_busy": self.machine_busy, "seeds_planned": self.seeds_planned}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = FILE) -> SpeedrunResult:
        """A validated speedrun.json (one CheckpointError line naming the file and field)."""
        check_schema(data, SPEEDRUN_SCHEMA, where)
        def fields(d: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
            return {k: d[k] for k in schema}

        return cls(Recipe(**fields(data["recipe"], SPEEDRUN_SCHEMA["recipe"])),
                   Levers(**fields(data["levers"], SPEEDRUN_SCHEMA["levers"])), data["device"], data["device_name"],
                   data["target"], data["summary"]["data_s"], data["train_samples"], data["test_samples"],
                   data.get("model_parameters", 0), [SeedResult(**fields(r, SEED_SCHEMA)) for r in data["runs"]],
                   dict(data.get("env") or {}), dict(data.get("load") or {}),
                   data.get("seeds_planned", len(data["runs"])))

    def _repr_html_(self) -> str:
        s = self.summary()
        return html_table(f"speedrun {self.recipe.model} on {self.device} ({self.device_name})", [
            ("levers", self.levers.describe()),
            ("test accuracy", _accuracy_words(s)),
            ("reached the target", f"{s['reached_target']} of {s['seeds']} reached {self.target:g}%"),
            ("time to train + evaluate", f"median {s['time_median_s']:.2f} s (range {s['time_min_s']:.2f}–"
                                         f"{s['time_max_s']:.2f} s)"),
            ("not timed", f"data to the device {s['data_s']:.2f} s once, warm-up {s['warmup_median_s']:.2f} s per seed"),
            ("stability", "stable" if self.stability.stable else self.stability.reason)])

    def line(self) -> str:
        s = self.summary()
        return (f"speedrun {self.recipe.model} on {self.device} ({self.levers.describe()}): "
                f"{_accuracy_words(s)} test accuracy, "
                f"{s['reached_target']}/{s['seeds']} reached {self.target:g}%; time to train + evaluate "
                f"median {s['time_median_s']:.2f} s (range {s['time_min_s']:.2f}-{s['time_max_s']:.2f} s); "
                f"not included: data to device {s['data_s']:.2f} s once, warm-up {s['warmup_median_s']:.2f} s "
                f"per seed" + ("" if self.stability.stable else f"; {self.stability.reason}")
                + ("" if self.complete else f"; stopped after {len(self.seeds)} of {self.seeds_planned} seeds"))


def _accuracy_words(s: dict[str, Any]) -> str:
    """'99.18% ± 0.03 over 10 seeds'; one seed has no spread to state."""
    if s["seeds"] == 1:
        return f"{s['accuracy_mean']:.2f}% over 1 seed (no spread with one)"
    return f"{s['accuracy_mean']:.2f}% ± {s['accuracy_std']:.2f} over {s['seeds']} seeds"


def load_to_device(train: RawSplit, test: RawSplit, spec: DatasetSpec, batch_size: int,
                   device: torch.device, seed: int = 0) -> tuple[DeviceLoader, DeviceLoader, float]:
    """Both splits on the device, normalised; returns the loaders and the seconds it took."""
    synchronize(device)
    t0 = time.perf_counter()
    tr = DeviceLoader(train, spec.mean, spec.std, batch_size, device, shuffle=True, seed=seed)
    te = DeviceLoader(test, spec.mean, spec.std, 1000, device, shuffle=False)
    synchronize(device)
    return tr, te, time.perf_counter() - t0


def run_seed(recipe: Recipe, levers: Levers, seed: int, train: DeviceLoader, test: DeviceLoader,
             shape: DataShape) -> SeedResult:
    """One from-scratch run: build, warm up (untimed, undone), then train + evaluate (timed)."""
    device = train.device
    train.seed = seed  # this seed's batch order
    torch.manual_seed(seed)
    model = prepare_model(create_model(recipe.model, shape), levers, device, sample_shape=shape.sample)
    steps = recipe.epochs * len(train)
    lr: float | torch.Tensor = recipe.max_lr
    if levers.cuda_graphs:  # a captured step reads the learning rate from device memory, which the schedule fills
        lr = torch.tensor(recipe.max_lr, device=device)
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, capturable=levers.cuda_graphs, fused=fused or None)
    # no momentum cycling: Adam's betas are host floats that a captured CUDA graph would freeze, and the
    # recipe must be the same arithmetic with every lever
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.max_lr, total_steps=steps,
                                                   pct_start=recipe.pct_start, cycle_momentum=False)
    step = make_step(model, optimizer, levers, device, batch_size=recipe.batch_size,
                     sample_shape=tuple(train.x.shape[1:]))

    synchronize(device)
    t0 = time.perf_counter()
    x0, y0 = next(train.batches(0))
    warm_up(step, x0.clone(), y0.clone(), steps=recipe.warmup_steps)
    with autocast(levers, device):  # the evaluation's first call, too
        evaluate(model, _first_batch_only(test), shape.classes)
    synchronize(device)
    warmup_s = time.perf_counter() - t0

    synchronize(device)
    t0 = time.perf_counter()
    model.train()
    loss = torch.zeros((), device=device)
    for epoch in range(1, recipe.epochs + 1):
        for x, y in train.batches(epoch, out=step.static_inputs):
            loss = step(x, y)
            schedule.step()
    synchronize(device)
    t1 = time.perf_counter()
    with autocast(levers, device):
        result = evaluate(model, test, shape.classes)  # the whole test set; ends in a host read (a sync)
    synchronize(device)
    t2 = time.perf_counter()
    return SeedResult(seed=seed, accuracy=100.0 * result.correct / result.total, correct=result.correct,
                      total=result.total, seconds=t2 - t0, train_s=t1 - t0, eval_s=t2 - t1, warmup_s=warmup_s,
                      final_loss=float(loss))


class _first_batch_only:
    """A loader that serves only the first batch of another: the evaluation's warm-up."""

    def __init__(self, loader: DeviceLoader) -> None:
        self.device = loader.device
        self._loader = loader

    def batches(self, epoch: int = 0):
        yield next(self._loader.batches(epoch))


def speedrun(train: RawSplit, test: RawSplit, spec: DatasetSpec, device: torch.device, *,
             seeds: int = DEFAULT_SEEDS, target: float = DEFAULT_TARGET, recipe: Recipe | None = None,
             levers: Levers | None = None, log: Callable[[str], None] = print,
             on_seed: Callable[[SpeedrunResult], None] | None = None) -> SpeedrunResult:
    """`seeds` from-scratch runs; `on_seed(result so far)` after each one, so that a job can keep the
    seeds already finished when a signal stops the rest."""
    recipe = recipe or Recipe()
    levers = levers or default_levers(device)
    levers.check(device)
    load_start = load_snapshot()
    tr, te, data_s = load_to_device(train, test, spec, recipe.batch_size, device)
    result = SpeedrunResult(recipe, levers, device.type, device_name(device), target, data_s, len(train), len(test),
                            parameters=count_parameters(create_model(recipe.model, spec.shape)), env=environment(),
                            seeds_planned=seeds)
    for seed in range(seeds):
        r = run_seed(recipe, levers, seed, tr, te, spec.shape)
        log(f"  seed {seed}: {r.accuracy:.2f}% in {r.seconds:.2f} s (train {r.train_s:.2f} s, test eval "
            f"{r.eval_s:.2f} s; warm-up {r.warmup_s:.2f} s apart)")
        result.seeds.append(r)
        result.load = {"start": load_start, "end": load_snapshot()}
        if on_seed is not None:
            on_seed(result)
    return result

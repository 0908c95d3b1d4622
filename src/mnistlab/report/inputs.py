"""What a report reads, gathered and validated once: the lab record, the runs, and each typed result.

Every section takes one `Inputs` and reads from it; none opens a file of its own, so a damaged file
is one error naming it, raised before any section writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mnistlab.core.errors import CheckpointError, MnistlabError
from mnistlab.core.rundir import ENV_SCHEMA, RunDir, read_json_object
from mnistlab.core.schema import check, read_result
from mnistlab.data.datasets import DataShape, get_dataset, plain_name
from mnistlab.measure.bench import BenchResult
from mnistlab.measure.gpus import DEFAULT_GPU, GPUS, Gpu
from mnistlab.measure.prediction import Expected, expectations
from mnistlab.measure.sweeps import SWEEP_FILE, TrialRow, sweep_results
from mnistlab.report.runs import config, device_of
from mnistlab.training.models import DEFAULT_SHAPE, ModelCode, model_code, model_code_for_run

LAB_FILE = "lab.json"
DATA_SCHEMA = {
    "dataset": "text",
    "train_samples": "int",
    "test_samples": "int",
    "image_shape": ["int"],
    "stored_dtype": "text",
    "model_input": {"shape": ["int"], "dtype": "text", "transform": "text"},
    "label_dtype": "text",
    "first_train_label": "any",
    "pixel_mean": "number",
    "pixel_std": "number",
}
LAB_SCHEMA = {
    "runs": ["text"],
    "bench?": "text?",
    "speedrun?": "text?",
    "quick?": "bool",
    "env?": {**ENV_SCHEMA},
    "data?": DATA_SCHEMA,
    "split?": "text",
    "seed?": "int",
    "models?": ["text"],
    "plan?": {"*": "any"},
}


@dataclass
class LabRecord:
    """lab.json: what a lab ran, the machine and data it ran on, and the folders of its parts."""

    FILE = LAB_FILE

    quick: bool
    plan: dict[str, Any]
    env: dict[str, Any]
    data: dict[str, Any]
    split: str
    seed: int
    models: list[str]
    runs: list[str] = field(default_factory=list)  # run folders, in the order they were trained
    bench: str | None = None
    speedrun: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabRecord:
        """A lab.json read back (read_lab has checked it), to be continued by `lab --resume`."""
        return cls(
            quick=bool(data.get("quick")),
            plan=dict(data.get("plan") or {}),
            env=dict(data.get("env") or {}),
            data=dict(data.get("data") or {}),
            split=data.get("split", ""),
            seed=int(data.get("seed", 0)),
            models=list(data.get("models") or []),
            runs=list(data["runs"]),
            bench=data.get("bench"),
            speedrun=data.get("speedrun"),
        )


def read_lab(folder: Path) -> dict[str, Any]:
    """lab.json, validated (LAB_SCHEMA)."""
    path = folder / LAB_FILE
    return check(read_json_object(path), LAB_SCHEMA, str(path))


MODEL_NAMES = {"mlp": "MLP", "cnn": "CNN"}


@dataclass(frozen=True)
class Inputs:
    root: Path  # the lab directory, else the first directory given
    lab: dict[str, Any] | None  # lab.json, validated
    runs: list[RunDir]  # runs with at least one finished epoch
    unfinished: list[RunDir]  # runs with none yet (left out, named)
    bench: BenchResult | None
    bench_dir: Path | None
    results: dict[type, list[Any]]  # each result type a section reads (report/sections): those found
    sweep: tuple[dict[str, Any], list[TrialRow]] | None  # sweep.json's record and its trials
    figs: Path = Path("figures")  # where sections draw their figures: the builder sets it beside the report
    gpu: Gpu = GPUS[DEFAULT_GPU]  # the GPU Q6 and Q9 predict a step's time on

    def results_of(self, kind: type) -> list[Any]:
        return self.results.get(kind, [])

    @cached_property
    def expected(self) -> dict[str, Expected]:
        """Each model's step measured here and predicted on `gpu` (measure/prediction.py), from the bench."""
        return {e.model: e for e in expectations(self.bench, self.gpu)} if self.bench else {}

    @property
    def quick(self) -> bool:
        return bool(self.lab and self.lab.get("quick"))

    @cached_property
    def env(self) -> dict[str, Any] | None:
        """The machine's environment record: the lab's, else the first run's when it is complete."""
        env = (self.lab or {}).get("env") or (self.runs[0].env() if self.runs else None)
        return env if env and all(k.endswith("?") or k in env for k in ENV_SCHEMA) else None

    def runs_of(self, model: str) -> list[RunDir]:
        return [r for r in self.runs if config(r).get("model") == model]

    def cpu_run(self, model: str) -> RunDir | None:
        return next((r for r in self.runs_of(model) if device_of(r) == "cpu"), None)

    def gpu_runs(self, model: str) -> list[RunDir]:
        return [r for r in self.runs_of(model) if device_of(r) != "cpu"]

    def no_gpu_run(self, model: str) -> str:
        """Why there is no GPU run of `model`, saying only what the directories show."""
        any_gpu = any(device_of(r) != "cpu" for r in self.runs)
        why = f"no GPU run of the {MODEL_NAMES.get(model, model)}" if any_gpu else "no GPU run"
        env = self.env or {}
        machine = env.get("cuda_available") is False and env.get("mps_available") is False
        return f"{why} in these directories" + (" (the machine that ran them had no GPU)" if machine else "")

    @cached_property
    def _profiles(self) -> dict[tuple[str, int], Any]:
        return {}

    def profile(self, model: str, batch_size: int = 1) -> Any:
        """A model's parameters, MACs and FLOPs (measure/profiling.py) at a batch size, counted once per report:
        the model of these runs where there is one, else the registry's (Q7 and Q10 both read them)."""
        from mnistlab.measure.profiling import profile_model

        key = (model, batch_size)
        if key not in self._profiles:
            code, shape = self.model_codes[model] if model in self.model_codes else (model_code(model), DEFAULT_SHAPE)
            self._profiles[key] = profile_model(code, batch_size, shape)
        return self._profiles[key]

    @cached_property
    def model_codes(self) -> dict[str, tuple[ModelCode, DataShape]]:
        """Each model of the runs (first run wins), with the code to build it and its data's shape;
        without runs, the lab's models, else the bench's."""
        codes: dict[str, tuple[ModelCode, DataShape]] = {}
        for r in self.runs:
            cfg = config(r)
            if cfg["model"] not in codes:
                try:
                    shape = get_dataset(cfg["dataset"]).shape
                except MnistlabError:  # a dataset row no longer defined: MNIST's shape
                    shape = DEFAULT_SHAPE
                codes[cfg["model"]] = (model_code_for_run(r.path, cfg["model"]), shape)
        if codes:
            return codes
        names = (self.lab or {}).get("models") or list(
            dict.fromkeys(c.model for c in self.bench.cells) if self.bench else []
        )
        return {m: (model_code(m), DEFAULT_SHAPE) for m in names}


def _lab_dirs(root: Path, lab: dict[str, Any]) -> tuple[list[RunDir], list[Path], list[Path]]:
    """The runs, bench and speedrun folders lab.json names, each checked to be a plain folder inside the lab."""
    named = [*lab["runs"], *(n for n in (lab.get("bench"), lab.get("speedrun")) if isinstance(n, str))]
    for name in named:
        # a run is listed as it starts: one that a stop cut off before its folder existed is not there yet
        absent_run = name in lab["runs"] and not (root / name).exists()
        if not plain_name(name) or not ((root / name).is_dir() or absent_run):
            raise CheckpointError(f"{root / LAB_FILE}: lists {name!r}, which is not a folder in {root}")
    if lab.get("data") and ("split" not in lab or "seed" not in lab):
        raise CheckpointError(f"{root / LAB_FILE}: has data but no split or seed")
    benches = [root / lab["bench"]] if lab.get("bench") else []
    others = [root / lab["speedrun"]] if isinstance(lab.get("speedrun"), str) else []
    return [RunDir(root / n) for n in lab["runs"] if (root / n).is_dir()], benches, others


def read_inputs(paths: list[Path]) -> Inputs:
    """Classify a lab directory or a list of run, bench, sweep and measurement directories (a folder holding
    the file of a result type some section reads), and read every result they hold (validated: a damaged
    file is one error naming it)."""
    from mnistlab.report.sections import result_types

    kinds = result_types()
    for p in paths:
        if not p.is_dir():
            raise CheckpointError(f"{p}: no such directory")
    lab, sweep = None, None
    runs: list[RunDir] = []
    bench_dirs: list[Path] = []
    others: list[Path] = []  # folders of the other measurements
    if len(paths) == 1 and (paths[0] / LAB_FILE).is_file():
        lab = read_lab(paths[0])
        runs, bench_dirs, others = _lab_dirs(paths[0], lab)
    for p in [] if lab else paths:
        if (p / BenchResult.FILE).is_file():
            bench_dirs.append(p)
        elif (p / "config.json").exists() or (p / "config.json").is_symlink():  # read (and refused) as a run's
            runs.append(RunDir(p))
        elif (p / SWEEP_FILE).is_file():
            sweep = sweep_results(p)
        elif any((p / k.FILE).is_file() for k in kinds):
            others.append(p)
        else:
            raise CheckpointError(f"{p}: neither a run directory, a bench or scaling directory nor a lab directory")
    extra: dict[type, list[Any]] = {
        kind: [read_result(kind, p) for p in others if (p / kind.FILE).is_file()] for kind in kinds
    }
    bench_dir = bench_dirs[0] if bench_dirs else None
    return Inputs(
        root=paths[0],
        lab=lab,
        runs=[r for r in runs if r.metrics()],
        unfinished=[r for r in runs if not r.metrics()],
        bench=read_result(BenchResult, bench_dir) if bench_dir else None,
        bench_dir=bench_dir,
        results=extra,
        sweep=sweep,
    )

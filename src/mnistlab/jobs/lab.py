"""`mnistlab lab`: the notebook's whole experiment plan in one command, then the report.

Plan: environment; the data; both models; the MLP for N epochs on the CPU, then resumed
for N more; the same MLP on the GPU when there is one; the CNN on the CPU and the GPU (the
full plan also trains a fresh CNN on, to see how many epochs it needs to reach the notebook's
97.4%); profile and bench; the speedrun; the report. Every step writes into one lab directory, and
the report is rebuilt from it (`mnistlab report LAB_DIR`).

`mnistlab lab --resume LAB_DIR` finishes a lab that was stopped or killed: what is done is kept, a
run resumes from its last checkpoint, and a bench or speedrun that did not finish runs again into a
new folder. The lab folder is locked while a lab works in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from mnistlab.core.defaults import BUILTIN_MODELS, PIPELINES, RUNS_DIR
from mnistlab.core.device import resolve_device
from mnistlab.core.environment import environment
from mnistlab.core.errors import CheckpointError
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RunDir, only_leftovers
from mnistlab.core.schema import read_result
from mnistlab.core.timing import Timer
from mnistlab.core.words import plural
from mnistlab.core.writer import JobFolder
from mnistlab.data.info import dataset_info
from mnistlab.data.loader import read_split
from mnistlab.jobs.bench import bench_pipelines
from mnistlab.jobs.folder import dataset as fetch_dataset
from mnistlab.jobs.folder import job_folder
from mnistlab.jobs.speedrun import speedrun
from mnistlab.jobs.train import train_run
from mnistlab.measure.bench import BenchResult
from mnistlab.measure.gpus import DEFAULT_GPU
from mnistlab.measure.gpus import gpu as gpu_row
from mnistlab.measure.speedrun import DEFAULT_TARGET, SpeedrunResult
from mnistlab.measure.table import fit_width, text_table
from mnistlab.report.builder import build_report
from mnistlab.report.inputs import LabRecord, read_lab
from mnistlab.report.lab_state import LONGER_EPOCHS, LONGER_RUN, run_state
from mnistlab.report.plots import plot_samples
from mnistlab.training.config import TrainConfig

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["LabPlan", "run_lab"]


@dataclass(frozen=True)
class PlannedRun:
    name: str  # its folder in the lab
    config: TrainConfig
    epochs: int  # the epochs it has when the plan is done


@dataclass(frozen=True)
class LabPlan:
    mlp_epochs: int  # then resumed for as many more
    cnn_epochs: int
    cnn_cpu_max_steps: int | None  # step limit per epoch for the CNN on the CPU
    bench_steps: int
    bench_repeats: int
    speedrun_seeds: int  # mnistlab speedrun on the fastest device here
    # a fresh CNN on the CPU trained this many epochs, to see which first reaches the notebook's 97.4% (None: not)
    cnn_longer_epochs: int | None = None

    @classmethod
    def for_mode(cls, quick: bool) -> LabPlan:
        if quick:
            # the notebook's CNN recipe needs ~400 steps to leave its initial plateau
            return cls(
                mlp_epochs=5, cnn_epochs=2, cnn_cpu_max_steps=400, bench_steps=30, bench_repeats=2, speedrun_seeds=2
            )
        return cls(
            mlp_epochs=10,
            cnn_epochs=2,
            cnn_cpu_max_steps=None,
            bench_steps=100,
            bench_repeats=3,
            speedrun_seeds=10,
            cnn_longer_epochs=LONGER_EPOCHS,
        )

    @classmethod
    def from_record(cls, plan: dict[str, Any]) -> LabPlan:
        """The plan a lab.json recorded (its other keys, such as the planned runs, are derived)."""
        return cls(**{f.name: plan[f.name] for f in fields(cls) if f.name in plan})

    def runs(self, base: TrainConfig, accel: torch.device | None) -> list[PlannedRun]:
        """Every training run of the plan, in order: its folder's name, its config and the epochs it ends with
        (the MLP on the CPU trains `mlp_epochs`, then is resumed for as many more)."""
        n = self.mlp_epochs
        out = [PlannedRun("mlp-cpu", base.replace(model="mlp", epochs=n), 2 * n)]
        if accel:
            out.append(PlannedRun(f"mlp-{accel.type}", base.replace(model="mlp", epochs=n, device=accel.type), n))
        cnn = base.replace(model="cnn", epochs=self.cnn_epochs)
        out.append(PlannedRun("cnn-cpu", cnn.replace(max_steps=self.cnn_cpu_max_steps), self.cnn_epochs))
        if accel:
            out.append(PlannedRun(f"cnn-{accel.type}", cnn.replace(device=accel.type), self.cnn_epochs))
        if self.cnn_longer_epochs:
            out.append(PlannedRun(LONGER_RUN, cnn.replace(epochs=self.cnn_longer_epochs), self.cnn_longer_epochs))
        return out

    def to_record(self, runs: list[PlannedRun]) -> dict[str, Any]:
        return {**self.__dict__, "runs": {r.name: r.epochs for r in runs}}


def run_lab(
    *,
    quick: bool = False,
    device: str = "auto",
    out: str | Path | None = None,
    data_dir: str | None = None,
    dataset: str = "mnist",
    subset: int | None = None,
    log: Callable[[str], None] = _LOG,
    progress: bool = True,
    gpu: str = DEFAULT_GPU,
    resume: str | Path | None = None,
) -> Path:
    """Run the plan; return the path of report.html. `subset` shrinks the data (tests only); `gpu`: the
    GPU of measure/gpus.py's table whose step time the report predicts. `resume`: a lab directory to
    finish (its own plan, mode, dataset and data subset; `quick`, `out`, `dataset` and `subset` are not given)."""
    gpu_row(gpu)  # an unknown name fails before anything runs
    resolved = resolve_device(device)
    accel = resolved if resolved.type != "cpu" else None
    record = None
    if resume is not None:  # a folder that is no lab fails in read_lab, before any lock
        record = LabRecord.from_dict(read_lab(Path(resume)))
        plan, dataset, subset = LabPlan.from_record(record.plan), record.data["dataset"], record.plan.get("subset")
        opened = job_folder(resume, job="lab", existing=True, lock=True)
    else:
        plan = LabPlan.for_mode(quick)
        opened = job_folder(out, RUNS_DIR, "lab" + ("-quick" if quick else ""), "lab", lock=True)
    with opened as lab:
        if record is not None:
            log(f"finishing {lab.path}: what is done is kept")
        return _run_plan(
            lab,
            plan,
            accel,
            record,
            quick=quick,
            data_dir=data_dir,
            dataset=dataset,
            subset=subset,
            log=log,
            progress=progress,
            gpu=gpu,
        )


def _fresh_name(lab: JobFolder, stem: str) -> str:
    """A folder name in the lab for a part that runs again: `stem`, else stem-2, stem-3, ..."""
    for k in range(1, 1000):
        name = stem if k == 1 else f"{stem}-{k}"
        p = lab / name
        if not p.exists() or (p.is_dir() and only_leftovers(p)):
            return name
    raise CheckpointError(f"{lab.path}: no free folder name for {stem}")


def _done(lab: JobFolder, name: str | None, kind: Any, complete: Callable[[Any], bool]) -> bool:  # kind: a result class
    """A bench or speedrun the record names, whose result is there and complete."""
    if not name or not (lab / name / kind.FILE).is_file():
        return False
    return complete(read_result(kind, lab / name))


def _run_plan(
    lab: JobFolder,
    plan: LabPlan,
    accel: torch.device | None,
    record: LabRecord | None,
    *,
    quick: bool = False,
    data_dir: str | None,
    dataset: str,
    subset: int | None,
    log: Callable[[str], None],
    progress: bool,
    gpu: str,
) -> Path:
    clock = Timer().start()
    total_steps = 9

    def step(i: int, what: str) -> None:
        log(f"\n[{i}/{total_steps}] {what}  ({clock.lap():.0f} s so far)")

    step(1, "environment")
    env = record.env if record else environment()  # a resumed lab keeps the machine it started on
    log(f"torch {env['torch']}, CUDA {env['cuda_available']}, CPU {env['cpu']} ({env['torch_threads']} threads)")

    step(2, f"data: {dataset}")
    spec, root = fetch_dataset(dataset, data_dir, log=log)
    info = dataset_info(spec, root)
    train_raw = read_split(spec, root, train=True)
    for name, n in (("first-sample.png", 1), ("samples.png", 32)):
        if not (lab / name).is_file():
            plot_samples(train_raw.images[:n].numpy(), train_raw.labels[:n].numpy(), spec.classes, lab / name, n=n)
    log(f"{info['train_samples']:,} train / {info['test_samples']:,} test, first label {info['first_train_label']}")

    step(3, "models: mlp and cnn (see the report)")
    base = TrainConfig(dataset=spec.name, data_dir=data_dir, subset=subset, device="cpu")
    planned = plan.runs(base, accel)
    if record is None:
        record = LabRecord(
            quick=quick,
            plan={**plan.to_record(planned), **({"subset": subset} if subset else {})},
            env=env,
            data=info,
            split="48k/12k (0.2)",
            seed=base.seed,
            models=list(BUILTIN_MODELS),
        )
    else:  # a GPU here that the first machine did not have adds its runs to the plan
        record.plan["runs"] = {**plan.to_record(planned)["runs"], **record.plan.get("runs", {})}
    lab.save(record)

    def train(run: PlannedRun) -> None:
        """Start the run, or finish it (from its last checkpoint), up to its planned epochs."""
        if run.name not in record.runs:  # listed before it starts: a report of a stopped lab finds it
            record.runs.append(run.name)
            lab.save(record)
        folder = lab / run.name
        state = run_state(folder, run.epochs)
        if state.done:
            log(f"{run.name}: done ({plural(state.epochs, 'epoch')}), kept")
            return
        if not state.started:
            train_run(run.config, run_dir=folder, log=log, progress=progress, figure=False)
        elif not state.finished_session:  # killed or stopped: it finishes the epochs it was started with
            log(f"{run.name}: {state.words()}; resuming it")
            train_run(resume=folder, log=log, progress=progress, figure=False)
        more = run.epochs - len(RunDir(folder).metrics())
        if more > 0:
            log(f"resuming {run.name} for {plural(more, 'more epoch')}")
            train_run(resume=folder, overrides={"epochs": more}, log=log, progress=progress, figure=False)

    by_name = {r.name: r for r in planned}
    step(4, f"MLP on the CPU: {plan.mlp_epochs} epochs, then resumed for {plan.mlp_epochs} more")
    train(by_name["mlp-cpu"])

    step(
        5,
        f"MLP on the GPU ({accel.type}): {plan.mlp_epochs} epochs" if accel else "MLP on the GPU: no GPU here, skipped",
    )
    if accel:
        train(by_name[f"mlp-{accel.type}"])

    step(
        6,
        f"CNN: {plan.cnn_epochs} epochs on the CPU"
        + (f" and on {accel.type}" if accel else "")
        + (f" (CPU limited to {plan.cnn_cpu_max_steps} steps per epoch)" if plan.cnn_cpu_max_steps else "")
        + (
            f"; then a fresh CNN for {plan.cnn_longer_epochs} epochs on the CPU (which epoch reaches 97.4%?)"
            if plan.cnn_longer_epochs
            else ""
        ),
    )
    train(by_name["cnn-cpu"])
    if accel:
        train(by_name[f"cnn-{accel.type}"])
    if plan.cnn_longer_epochs:
        train(by_name[LONGER_RUN])

    step(7, f"bench: {plan.bench_repeats} x {plan.bench_steps} steps per cell")
    if _done(lab, record.bench, BenchResult, lambda b: bool(b.cells)):
        log(f"{record.bench}: done, kept")
    else:
        devices = ["cpu"] + ([accel.type] if accel else [])
        name = _fresh_name(lab, "bench")
        result, _, _ = bench_pipelines(
            models=list(BUILTIN_MODELS),
            devices=devices,
            pipelines=list(PIPELINES),
            batch_size=base.batch_size,
            steps=plan.bench_steps,
            repeats=plan.bench_repeats,
            warmup=10,
            dataset_name=dataset,
            data_dir=data_dir,
            out=lab / name,
            under=lab.path,
            subset=subset,
            log=log,
        )
        log(bench_summary(result))
        record.bench = name
        lab.save(record)

    fastest = accel or resolve_device("cpu")
    step(8, f"speedrun: time to {DEFAULT_TARGET:g}% on {fastest.type}, {plan.speedrun_seeds} seeds")
    if _done(lab, record.speedrun, SpeedrunResult, lambda s: s.complete):
        log(f"{record.speedrun}: done, kept")
    else:
        name = _fresh_name(lab, "speedrun")
        sr, _ = speedrun(
            device=fastest.type,
            seeds=plan.speedrun_seeds,
            target=DEFAULT_TARGET,
            dataset_name=dataset,
            data_dir=data_dir,
            out=lab / name,
            under=lab.path,
            subset=subset,
            log=log,
        )
        log(sr.table())
        record.speedrun = name
        lab.save(record)

    step(9, "report")
    # absolute: printed for the user to open
    md, page = (p.resolve() for p in build_report([lab.path], gpu=gpu, writer=lab.writer))
    log(f"report: {page}\n        {md}\nlab finished in {clock.lap():.0f} s")
    return page


def bench_summary(result: BenchResult) -> str:
    """The bench's cells as the lab prints them: step time, throughput, data share, bound, stability."""
    rows = [
        [
            c.key,
            f"{c.step_median_s * 1e3:.2f} ({c.step.min * 1e3:.2f}-{c.step.max * 1e3:.2f})",
            f"{c.samples_per_s:,.0f}",
            f"{c.share('data', 'h2d'):.0%}",
            f"{c.utilisation:.1%}",
            c.bound,
            "stable" if c.stability.stable else "unstable",
        ]
        for c in result.cells
    ]
    return fit_width(
        text_table(
            ["cell", "ms/step median (min-max)", "samples/s", "data + copy", "of the ceiling", "bound", "stability"],
            rows,
        )
        + "\n(bench.txt in the bench folder: every column)"
    )

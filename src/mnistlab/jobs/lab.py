"""`mnistlab lab`: the notebook's whole experiment plan in one command, then the report.

Plan: environment; the data; both models; the MLP for N epochs on the CPU, then resumed
for N more; the same MLP on the GPU when there is one; the CNN on the CPU and the GPU;
profile and bench; the report. Every step writes into one lab directory, and the report
is rebuilt from it (`mnistlab report LAB_DIR`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from mnistlab.core.defaults import BUILTIN_MODELS, PIPELINES, RUNS_DIR
from mnistlab.core.device import resolve_device
from mnistlab.core.environment import environment
from mnistlab.core.timing import Timer
from mnistlab.core.writer import JobFolder
from mnistlab.data.info import dataset_info
from mnistlab.data.loader import read_split
from mnistlab.jobs.bench import bench_pipelines
from mnistlab.jobs.folder import dataset as fetch_dataset
from mnistlab.jobs.folder import job_folder
from mnistlab.jobs.speedrun import speedrun
from mnistlab.jobs.train import train_run
from mnistlab.measure.gpus import DEFAULT_GPU
from mnistlab.measure.gpus import gpu as gpu_row
from mnistlab.measure.speedrun import DEFAULT_TARGET
from mnistlab.report.builder import build_report
from mnistlab.report.document import plural
from mnistlab.report.inputs import LabRecord
from mnistlab.report.plots import plot_samples
from mnistlab.training.config import TrainConfig

__all__ = ["LabPlan", "run_lab"]


@dataclass(frozen=True)
class LabPlan:
    mlp_epochs: int  # then resumed for as many more
    cnn_epochs: int
    cnn_cpu_max_steps: int | None  # step limit per epoch for the CNN on the CPU
    bench_steps: int
    bench_repeats: int
    speedrun_seeds: int  # mnistlab speedrun on the fastest device here

    @classmethod
    def for_mode(cls, quick: bool) -> LabPlan:
        if quick:
            # the notebook's CNN recipe needs ~400 steps to leave its initial plateau
            return cls(mlp_epochs=5, cnn_epochs=2, cnn_cpu_max_steps=400, bench_steps=30, bench_repeats=2,
                       speedrun_seeds=2)
        return cls(mlp_epochs=10, cnn_epochs=2, cnn_cpu_max_steps=None, bench_steps=100, bench_repeats=3,
                   speedrun_seeds=10)


def run_lab(*, quick: bool = False, device: str = "auto", out: str | Path | None = None,
            data_dir: str | None = None, dataset: str = "mnist", subset: int | None = None,
            log: Callable[[str], None] = print, progress: bool = True, gpu: str = DEFAULT_GPU) -> Path:
    """Run the plan; return the path of report.html. `subset` shrinks the data (tests only); `gpu`: the
    GPU of measure/gpus.py's table whose step time the report predicts."""
    gpu_row(gpu)  # an unknown name fails before anything runs
    plan = LabPlan.for_mode(quick)
    accel = resolve_device(device)
    accel = accel if accel.type != "cpu" else None
    with job_folder(out, RUNS_DIR, "lab" + ("-quick" if quick else ""), "lab") as lab:
        return _run_plan(lab, plan, accel, quick=quick, data_dir=data_dir, dataset=dataset, subset=subset, log=log,
                         progress=progress, gpu=gpu)


def _run_plan(lab: JobFolder, plan: LabPlan, accel: torch.device | None, *, quick: bool, data_dir: str | None,
              dataset: str, subset: int | None, log: Callable[[str], None], progress: bool, gpu: str) -> Path:
    clock = Timer().start()
    total_steps = 9

    def step(i: int, what: str) -> None:
        log(f"\n[{i}/{total_steps}] {what}  ({clock.lap():.0f} s so far)")

    step(1, "environment")
    env = environment()
    log(f"torch {env['torch']}, CUDA {env['cuda_available']}, CPU {env['cpu']} ({env['torch_threads']} threads)")

    step(2, f"data: {dataset}")
    spec, root = fetch_dataset(dataset, data_dir, log=log)
    info = dataset_info(spec, root)
    train_raw = read_split(spec, root, train=True)
    plot_samples(train_raw.images[:1].numpy(), train_raw.labels[:1].numpy(), spec.classes, lab / "first-sample.png", n=1)
    plot_samples(train_raw.images.numpy(), train_raw.labels.numpy(), spec.classes, lab / "samples.png", n=32)
    log(f"{info['train_samples']:,} train / {info['test_samples']:,} test, first label {info['first_train_label']}")

    step(3, "models: mlp and cnn (see the report)")
    base = TrainConfig(dataset=spec.name, data_dir=data_dir, subset=subset, device="cpu")
    record = LabRecord(quick=quick, plan=dict(plan.__dict__), env=env, data=info, split="48k/12k (0.2)",
                       seed=base.seed, models=list(BUILTIN_MODELS))
    lab.save(record)

    def train_into(name: str, cfg: TrainConfig, resume_epochs: int | None = None) -> None:
        train_run(cfg, run_dir=lab / name, log=log, progress=progress, figure=False)
        record.runs.append(name)
        lab.save(record)
        if resume_epochs:
            log(f"resuming {name} for {plural(resume_epochs, 'more epoch')}")
            train_run(resume=lab / name, overrides={"epochs": resume_epochs}, log=log, progress=progress,
                      figure=False)

    step(4, f"MLP on the CPU: {plan.mlp_epochs} epochs, then resumed for {plan.mlp_epochs} more")
    train_into("mlp-cpu", base.replace(model="mlp", epochs=plan.mlp_epochs), resume_epochs=plan.mlp_epochs)

    step(5, f"MLP on the GPU ({accel.type}): {plan.mlp_epochs} epochs" if accel else "MLP on the GPU: no GPU here, skipped")
    if accel:
        train_into(f"mlp-{accel.type}", base.replace(model="mlp", epochs=plan.mlp_epochs, device=accel.type))

    step(6, f"CNN: {plan.cnn_epochs} epochs on the CPU" + (f" and on {accel.type}" if accel else "")
         + (f" (CPU limited to {plan.cnn_cpu_max_steps} steps per epoch)" if plan.cnn_cpu_max_steps else ""))
    train_into("cnn-cpu", base.replace(model="cnn", epochs=plan.cnn_epochs, max_steps=plan.cnn_cpu_max_steps))
    if accel:
        train_into(f"cnn-{accel.type}", base.replace(model="cnn", epochs=plan.cnn_epochs, device=accel.type))

    step(7, f"bench: {plan.bench_repeats} x {plan.bench_steps} steps per cell")
    devices = ["cpu"] + ([accel.type] if accel else [])
    bench_pipelines(models=list(BUILTIN_MODELS), devices=devices, pipelines=list(PIPELINES), batch_size=base.batch_size,
                         steps=plan.bench_steps, repeats=plan.bench_repeats, warmup=10, dataset_name=dataset,
                         data_dir=data_dir, out=lab / "bench", under=lab.path, subset=subset, log=log)
    record.bench = "bench"
    lab.save(record)

    fastest = accel or resolve_device("cpu")
    step(8, f"speedrun: time to {DEFAULT_TARGET:g}% on {fastest.type}, {plan.speedrun_seeds} seeds")
    sr, _ = speedrun(device=fastest.type, seeds=plan.speedrun_seeds, target=DEFAULT_TARGET, dataset_name=dataset,
                          data_dir=data_dir, out=lab / "speedrun", under=lab.path, subset=subset, log=log)
    log(sr.table())
    record.speedrun = "speedrun"
    lab.save(record)

    step(9, "report")
    md, page = (p.resolve() for p in build_report([lab.path], gpu=gpu, writer=lab.writer))  # absolute: printed for the user to open
    log(f"report: {page}\n        {md}\nlab finished in {clock.lap():.0f} s")
    return page


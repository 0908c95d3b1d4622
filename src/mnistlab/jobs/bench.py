"""`mnistlab bench`: the three bench measurements as jobs, each writing one folder.

Pipelines (measure/bench.py: bench.json with each model's decomposition, bench.txt, bench.png,
decomposition.png), speed levers (measure/levers_bench.py:
levers.json, levers.txt) and data-parallel scaling (measure/scaling.py: scaling.json, scaling.txt); and, apart,
the pipeline cells' profiler traces (bench --trace: bench_traces). Every option is checked before any data or
timing work."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.errors import ConfigError
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RunDir
from mnistlab.core.writer import FILES, JobFolder
from mnistlab.data.datasets import DatasetSpec, data_root, get_dataset
from mnistlab.jobs.folder import Log, PathLike, dataset, fixed, job_folder, quiet

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["bench_levers", "bench_pipelines", "bench_scaling", "bench_traces", "write_bench"]


def write_bench(result: Any, folder: Path) -> str:
    """bench.json and bench.txt into an existing folder (a notebook's or a test's own bench)."""
    from mnistlab.measure.bench import bench_text

    text = bench_text(result)
    JobFolder(Path(folder), FILES, "bench").save(result, text, "bench.txt")
    return text


def _train_split(spec: DatasetSpec, root: Path, subset: int | None = None) -> Any:
    """The 80% of the official training set that runs train on (the bench's data)."""
    from mnistlab.data.loader import read_split, split_train_val

    train, _ = split_train_val(read_split(spec, root, train=True), 0.2, 0)
    return train if subset is None else train.__class__(train.images[:subset], train.labels[:subset])


def _check_models(models: Sequence[str], spec: DatasetSpec) -> None:
    from mnistlab.training.models import create_model

    for m in models:
        create_model(m, spec.shape)  # a bad name or spec fails before any data or timing work


def _distinct(option: str, values: Sequence[str]) -> None:
    """One cell per name: a repeated name would give two cells with one key (the report keeps one)."""
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:
        raise ConfigError(f"{option} names {twice!r} twice; each cell is measured once: drop the repeat")


def _bench_inputs(
    models: Sequence[str],
    devices: Sequence[str] | None,
    axis: tuple[str, Sequence[str]],
    dataset_name: str,
    data_dir: str | None,
    subset: int | None,
    log: Log,
) -> tuple[DatasetSpec, Any, list[str]]:
    """What a bench checks before any work (distinct names, models that build, devices that exist), then
    its data: the spec, the training split it times on, and the devices."""
    from mnistlab.core.device import available_devices

    spec = get_dataset(dataset_name)
    root = data_root(data_dir)  # absolute before a model's code runs (it may change the working directory)
    devices = list(devices or available_devices())
    for option, values in (("--models", models), ("--devices", devices), axis):
        _distinct(option, list(values))
    _check_models(models, spec)
    from mnistlab.core.device import resolve_device

    for d in devices:
        resolve_device(d)  # fail before any work on a device that is not there
    spec, root = dataset(dataset_name, root, log=log)
    return spec, _train_split(spec, root, subset), devices


def bench_pipelines(
    *,
    models: Sequence[str],
    devices: Sequence[str] | None = None,
    pipelines: Sequence[str],
    batch_size: int,
    steps: int | None,
    repeats: int,
    warmup: int,
    dataset_name: str = "mnist",
    data_dir: str | None = None,
    out: PathLike | None = None,
    under: PathLike = RUNS_DIR,
    subset: int | None = None,
    decompose: bool = True,
    log: Log = _LOG,
) -> tuple[Any, RunDir, str]:
    """Models x devices x input pipelines (measure.bench), and unless `decompose` is False each model's step
    decomposed (measure.decomposition.BENCH_DECOMPOSE): bench.json, bench.txt, bench.png and decomposition.png in
    a new folder; returns the result, the folder and the text."""
    from mnistlab.measure.bench import bench_text, run_bench
    from mnistlab.measure.decomposition import BENCH_DECOMPOSE
    from mnistlab.report.plots import plot_bench, plot_decomposition

    out, under = fixed(out), fixed(under)  # fixed as the job starts: a model's chdir moves nothing
    spec, split, devices = _bench_inputs(
        models, devices, ("--pipelines", pipelines), dataset_name, data_dir, subset, log
    )
    with job_folder(out, under, "bench", "bench") as job:
        result = run_bench(
            split,
            spec,
            models=list(models),
            devices=devices,
            pipelines=list(pipelines),
            batch_size=batch_size,
            steps=steps,
            repeats=repeats,
            warmup=warmup,
            decomposition=BENCH_DECOMPOSE if decompose else None,
            log=log,
        )
        text = bench_text(result)
        job.save(result, text, "bench.txt")
        plot_bench(result, job / "bench.png")
        if result.decompositions:
            plot_decomposition(result.decompositions, job / "decomposition.png")
    return result, RunDir(job.path), text


def bench_traces(
    folder: PathLike,
    *,
    models: Sequence[str],
    devices: Sequence[str] | None = None,
    pipelines: Sequence[str],
    batch_size: int,
    dataset_name: str = "mnist",
    data_dir: str | None = None,
    subset: int | None = None,
    name: str = "bench",
    log: Log = _LOG,
) -> list[Path]:
    """A profiler trace of each cell's step (measure/trace.py), one file per cell in `folder`, named
    `name`-MODEL-DEVICE-PIPELINE.trace.json; returns their paths. A pass of its own, after the timing: the
    profiler slows each operator, so no timed step is ever a traced one. Each cell is prepared afresh, as the
    bench prepares it (prepare_cell), and runs TRACE_WARMUP untraced steps before the TRACE_STEPS it records."""
    from mnistlab.core.defaults import TRACE_STEPS, TRACE_WARMUP
    from mnistlab.core.device import resolve_device
    from mnistlab.core.failures import blame_model
    from mnistlab.measure.bench import prepare_cell
    from mnistlab.measure.trace import events, trace_name, trace_steps, write_trace

    folder = fixed(folder)
    spec, split, devices = _bench_inputs(
        models, devices, ("--pipelines", pipelines), dataset_name, data_dir, subset, quiet
    )
    paths = []
    for device in (resolve_device(d) for d in devices):
        for model, pipeline in itertools.product(models, pipelines):
            with blame_model(model, "while being traced"):
                cell = prepare_cell(
                    model, device, pipeline, split, spec, batch_size=batch_size, steps=TRACE_WARMUP + TRACE_STEPS
                )
                data = trace_steps(cell.step, device, TRACE_STEPS, TRACE_WARMUP)
            path = write_trace(data, folder, trace_name(name, model, device.type, pipeline))
            log(f"trace: {TRACE_STEPS} steps of {model} on {device.type} ({pipeline}), {events(data):,} events: {path}")
            paths.append(path)
    return paths


def bench_levers(
    *,
    models: Sequence[str],
    devices: Sequence[str] | None = None,
    implementations: Sequence[str],
    batch_size: int,
    steps: int | None,
    repeats: int,
    warmup: int,
    dataset_name: str = "mnist",
    data_dir: str | None = None,
    out: PathLike | None = None,
    log: Log = _LOG,
) -> tuple[Any, RunDir, str]:
    """The speed levers side by side on resident data (measure.levers_bench): levers.json and levers.txt."""
    from mnistlab.measure.levers_bench import levers_text, run_levers_bench

    out, under = fixed(out), fixed(RUNS_DIR)  # fixed as the job starts: a model's chdir moves nothing
    spec, split, devices = _bench_inputs(
        models, devices, ("--implementations", implementations), dataset_name, data_dir, None, log
    )
    with job_folder(out, under, "bench", "bench --implementations") as job:
        result = run_levers_bench(
            split,
            spec,
            models=list(models),
            devices=devices,
            implementations=list(implementations),
            batch_size=batch_size,
            steps=steps or -(-len(split) // batch_size),
            repeats=repeats,
            warmup=warmup,
            log=log,
        )
        for m in models:  # a model none of whose levers could run measured nothing: a failure, not a result
            reasons = [c.unavailable for c in result.cells if c.model == m]
            if reasons and all(reasons):
                raise ConfigError(
                    f"nothing measured for model {m}: none of --implementations "
                    f"{' '.join(implementations)} could run with it here ({reasons[0]})"
                )
        text = levers_text(result)
        job.save(result, text, "levers.txt")
    return result, RunDir(job.path), text


def bench_scaling(
    *,
    models: Sequence[str],
    device: str,
    nproc: int,
    batch_size: int,
    steps: int,
    repeats: int,
    dataset_name: str = "mnist",
    out: PathLike | None = None,
    log: Log = _LOG,
) -> tuple[Any, RunDir, str]:
    """Data-parallel scaling, 1 against `nproc` processes (measure.scaling): scaling.json and scaling.txt."""
    from mnistlab.core.device import resolve_device
    from mnistlab.measure.scaling import format_scaling, measure_scaling

    out, under = fixed(out), fixed(RUNS_DIR)  # fixed as the job starts: a model's chdir moves nothing
    _distinct("--models", list(models))
    _check_models(models, get_dataset(dataset_name))
    resolve_device(device)
    if batch_size % nproc:  # before the one-process measurement, not after it
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch: it must divide evenly over {nproc} processes"
        )
    with job_folder(out, under, "scaling", "bench --nproc") as job:
        result = measure_scaling(
            list(models),
            device,
            [1, nproc],
            batch=batch_size,
            steps=steps,
            repeats=repeats,
            shape=get_dataset(dataset_name).shape,
            scratch=job.path,
        )
        text = format_scaling(result)
        job.save(result, text, "scaling.txt")
    return result, RunDir(job.path), text

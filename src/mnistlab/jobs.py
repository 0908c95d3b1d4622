"""Jobs: the only code that fetches data, creates output folders and writes result files.

The command line parses its arguments and calls one job; `lab` composes jobs; a notebook calls the
same functions (`mnistlab.evaluate_run(...)`). A job takes plain values, checks what it can before
any work (a bad model name, a device that is not there), writes into one folder, and returns what
it measured together with where it wrote it. Printing is the caller's: a job only logs progress.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.errors import ConfigError, DataError, MnistlabError
from mnistlab.core.failures import outcome
from mnistlab.core.richdisplay import html_table
from mnistlab.core.rundir import CONFIG, STATUS, RunDir, create_run_dir, open_run, write_json
from mnistlab.core.stopping import StopRequests
from mnistlab.data.datasets import DatasetSpec, data_root, get_dataset
from mnistlab.data.fetching import fetch, verify_present

Log = Callable[[str], None]
PathLike = str | os.PathLike


def _print(message: str) -> None:
    print(message)


@contextmanager
def job_folder(explicit: PathLike | None, under: PathLike, stem: str, job: str) -> Iterator[RunDir]:
    """A new output folder for `job` whose status.json ends in a final state whatever ends the job
    (core.failures), as a training run's does. SIGTERM stops the job like Ctrl-C, so it is recorded."""
    folder = create_run_dir(explicit, under, stem)
    write_json(folder / STATUS, {"state": "running", "job": job})
    try:
        with StopRequests():
            yield folder
    except BaseException as e:
        end = outcome(e)
        try:
            write_json(folder / STATUS, {"state": end.state, "job": job,
                                         "message": end.line or f"{type(e).__name__}: {e}"})
        except MnistlabError:  # the disk that failed the job may refuse this too: the first error is the one to say
            pass
        raise
    write_json(folder / STATUS, {"state": "completed", "job": job})


def dataset(name: str, data_dir: str | None = None, *, log: Log = _print, web: bool = True) -> tuple[DatasetSpec, Path]:
    """The dataset's spec and its data root, with its four files fetched and verified there."""
    spec, root = get_dataset(name), data_root(data_dir)
    fetch(spec, root, log=log, web=web)
    return spec, root


def train_run(config: Any = None, *, run_dir: PathLike | None = None, resume: PathLike | None = None,
              overrides: dict[str, Any] | None = None, log: Log = _print, progress: bool = True,
              tensorboard: bool = True, on_epoch: Callable[[dict[str, float]], bool] | None = None,
              runs_base: PathLike = RUNS_DIR, figure: bool = True, resume_if_exists: bool = False) -> RunDir:
    """Train a new run (`config`, a TrainConfig) or continue one (`resume`); the run draws its own
    loss.png (rank 0 alone under torchrun)."""
    from mnistlab.core.distributed import world
    from mnistlab.training.runner import train

    if resume is not None and run_dir is not None:
        raise MnistlabError("--run-dir and --resume cannot be used together (--resume names the run)")
    if resume is not None and resume_if_exists:
        raise MnistlabError("--resume and --resume-if-exists cannot be used together (give --run-dir with the latter)")
    run = train(config, run_dir=run_dir, runs_base=runs_base, resume=resume, overrides=overrides, log=log,
                progress=progress, on_epoch=on_epoch, tensorboard=tensorboard, resume_if_exists=resume_if_exists)
    if figure and world().is_main and run.metrics():
        from mnistlab.report.plots import plot_runs

        plot_runs([run], run / "loss.png")
    return run


@dataclass(frozen=True)
class RunEvaluation:
    """A run's checkpoint on its test images: what `mnistlab eval` shows."""

    run: Path
    model: str
    dataset: str
    checkpoint: str  # "last" or "best"
    epoch: int
    device: str
    subset: int | None  # a --subset run is tested on the first N test images, as its test.json was
    classes: tuple[str, ...]
    result: Any  # training.evaluation.EvalResult

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "checkpoint": self.checkpoint, "epoch": self.epoch, "subset": self.subset,
                "device": self.device, "model": self.model, "dataset": self.dataset}

    def _repr_html_(self) -> str:
        test_set = "all" if self.subset is None else f"the first {self.subset:,}"
        return html_table(f"{self.model} on {self.dataset}: {self.checkpoint}.pt (epoch {self.epoch}), tested",
                          [("run", self.run), ("device", self.device), ("test images", test_set), *self.result.rows()])


def evaluate_run(run_dir: PathLike, *, checkpoint: str = "last", device: str = "auto", data_dir: str | None = None,
                 log: Log = _print) -> RunEvaluation:
    """Test a run's `last` or `best` checkpoint with the code it was trained with. Reads only."""
    from mnistlab.core.device import resolve_device
    from mnistlab.data.loader import make_test_loader
    from mnistlab.training.checkpoint import load_checkpoint, load_model_state
    from mnistlab.training.config import load_run_config
    from mnistlab.training.evaluation import evaluate
    from mnistlab.training.models import create_model, model_code_for_run

    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    run = open_run(run_dir)
    cfg = load_run_config(run / CONFIG)
    state = load_checkpoint(run / f"{checkpoint}.pt")
    dev = resolve_device(device)
    spec = get_dataset(cfg.dataset)
    # the code the run was trained with (a file spec: the run's copy, after its SHA-256 is checked)
    model = create_model(model_code_for_run(run.path, cfg.model), spec.shape)
    load_model_state(model, state, run / f"{checkpoint}.pt")
    spec, root = dataset(cfg.dataset, data_dir, log=log) if data_dir or not cfg.data_dir else (
        _recorded_data(cfg.dataset, cfg.data_dir, run / CONFIG))
    loader = make_test_loader(spec, root, dev, subset=cfg.subset)
    result = evaluate(model.to(dev), loader, len(spec.classes))
    return RunEvaluation(run.path, cfg.model, cfg.dataset, checkpoint, int(state["epoch"]), str(dev), cfg.subset,
                         tuple(spec.classes), result)


def _recorded_data(name: str, recorded: str, config: Path) -> tuple[DatasetSpec, Path]:
    """The data root a run's config.json names, only read: a reader neither creates it nor fetches into it."""
    spec, root = get_dataset(name), data_root(recorded)
    where = f"the data_dir in {config}; a reader does not fetch into it: pass --data-dir to use another data root"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({where})")
    missing = verify_present(spec, root)
    if missing:
        raise DataError(f"{spec.raw_dir(root) / missing[0].name}: not there ({where})")
    return spec, root


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


def _check_devices(devices: Sequence[str]) -> None:
    from mnistlab.core.device import resolve_device

    for d in devices:
        resolve_device(d)  # fail before any work on a device that is not there


def _bench_inputs(models: Sequence[str], devices: Sequence[str] | None, axis: tuple[str, Sequence[str]],
                  dataset_name: str, data_dir: str | None, subset: int | None, log: Log) -> tuple[DatasetSpec, Any, list[str]]:
    """What a bench checks before any work (distinct names, models that build, devices that exist), then
    its data: the spec, the training split it times on, and the devices."""
    from mnistlab.core.device import available_devices

    spec = get_dataset(dataset_name)
    devices = list(devices or available_devices())
    for option, values in (("--models", models), ("--devices", devices), axis):
        _distinct(option, list(values))
    _check_models(models, spec)
    _check_devices(devices)
    spec, root = dataset(dataset_name, data_dir, log=log)
    return spec, _train_split(spec, root, subset), devices


def bench_pipelines(*, models: Sequence[str], devices: Sequence[str] | None = None, pipelines: Sequence[str],
                    batch_size: int, steps: int | None, repeats: int, warmup: int, dataset_name: str = "mnist",
                    data_dir: str | None = None, out: PathLike | None = None, under: PathLike = RUNS_DIR,
                    subset: int | None = None, log: Log = _print) -> tuple[Any, RunDir, str]:
    """Models x devices x input pipelines (measure.bench): bench.json, bench.txt and bench.png in a new
    folder; returns the result, the folder and the text."""
    from mnistlab.measure.bench import run_bench, write_bench
    from mnistlab.report.plots import plot_bench

    spec, split, devices = _bench_inputs(models, devices, ("--pipelines", pipelines), dataset_name, data_dir, subset,
                                         log)
    with job_folder(out, under, "bench", "bench") as folder:
        result = run_bench(split, spec, models=list(models), devices=devices, pipelines=list(pipelines),
                           batch_size=batch_size, steps=steps, repeats=repeats, warmup=warmup, log=log)
        text = write_bench(result, folder)
        plot_bench(result, folder / "bench.png")
    return result, folder, text


def bench_levers(*, models: Sequence[str], devices: Sequence[str] | None = None, implementations: Sequence[str],
                 batch_size: int, steps: int | None, repeats: int, warmup: int, dataset_name: str = "mnist",
                 data_dir: str | None = None, out: PathLike | None = None, log: Log = _print) -> tuple[Any, RunDir, str]:
    """The speed levers side by side on resident data (measure.levers_bench): levers.json and levers.txt."""
    from mnistlab.measure.levers_bench import run_levers_bench, write_levers_bench

    spec, split, devices = _bench_inputs(models, devices, ("--implementations", implementations), dataset_name,
                                         data_dir, None, log)
    with job_folder(out, RUNS_DIR, "bench", "bench --implementations") as folder:
        result = run_levers_bench(split, spec, models=list(models), devices=devices,
                                  implementations=list(implementations), batch_size=batch_size,
                                  steps=steps or -(-len(split) // batch_size), repeats=repeats, warmup=warmup, log=log)
        text = write_levers_bench(result, folder)
    return result, folder, text


def bench_scaling(*, models: Sequence[str], device: str, nproc: int, batch_size: int, steps: int, repeats: int,
                  dataset_name: str = "mnist", out: PathLike | None = None, log: Log = _print) -> tuple[Any, RunDir, str]:
    """Data-parallel scaling, 1 against `nproc` processes (measure.scaling): scaling.json and scaling.txt."""
    from mnistlab.core.device import resolve_device
    from mnistlab.measure.scaling import format_scaling, measure_scaling

    _distinct("--models", list(models))
    _check_models(models, get_dataset(dataset_name))
    resolve_device(device)
    if batch_size % nproc:  # before the one-process measurement, not after it
        raise ConfigError(f"--batch-size {batch_size} is the global batch: it must divide evenly over {nproc} processes")
    with job_folder(out, RUNS_DIR, "scaling", "bench --nproc") as folder:
        result = measure_scaling(list(models), device, [1, nproc], batch=batch_size, steps=steps, repeats=repeats,
                                 shape=get_dataset(dataset_name).shape)
        text = format_scaling(result)
        write_json(folder / result.FILE, result.to_dict())
        write_atomic(folder / "scaling.txt", (text + "\n").encode())
    return result, folder, text


def speedrun(*, device: str = "auto", seeds: int, target: float, levers: dict[str, Any] | None = None,
             dataset_name: str = "mnist", data_dir: str | None = None, out: PathLike | None = None,
             under: PathLike = RUNS_DIR, subset: int | None = None, log: Log = _print,
             cold_since: tuple[float, str] | None = None) -> tuple[Any, RunDir]:
    """Time to `target`% test accuracy from scratch over `seeds` seeds (measure.speedrun): speedrun.json.
    `levers`: overrides of the recipe's own (precision, channels_last, compile, cuda_graphs).
    `cold_since`: core.processstart.process_start(), given by the command line only: in a notebook the
    process started long before, and a cold time from then would mean nothing (it is recorded as not measured)."""
    from mnistlab.core.device import describe_choice, resolve_device
    from mnistlab.data.loader import read_split
    from mnistlab.measure.speedrun import default_levers
    from mnistlab.measure.speedrun import speedrun as run_speedrun

    dev = resolve_device(device)
    given = dict(levers or {})
    chosen = dataclasses.replace(default_levers(dev), **given)
    if chosen.compile != "off" and "cuda_graphs" not in given:  # the recipe's graphs give way to compile's
        chosen = dataclasses.replace(chosen, cuda_graphs=False)
    chosen.check(dev)  # before any data work or output folder
    spec, root = dataset(dataset_name, data_dir, log=log)
    train, test = read_split(spec, root, train=True), read_split(spec, root, train=False)
    if subset:
        train, test = (s.__class__(s.images[:subset], s.labels[:subset]) for s in (train, test))
    with job_folder(out, under, "speedrun", "speedrun") as folder:
        log(describe_choice(device, dev))
        kept: list[int] = []

        def keep(so_far: Any) -> None:  # every finished seed is on disk: a stop loses only the one running
            write_json(folder / so_far.FILE, so_far.to_dict())
            kept.append(len(so_far.seeds))

        try:
            result = run_speedrun(train, test, spec, dev, seeds=seeds, target=target, levers=chosen, log=log,
                                  on_seed=keep, cold_since=cold_since)
        except KeyboardInterrupt:
            log(f"stopped after {kept[-1]} of {seeds} seeds; {folder / 'speedrun.json'} holds them" if kept
                else f"stopped before the first seed finished; {folder} holds no result")
            raise
    return result, folder

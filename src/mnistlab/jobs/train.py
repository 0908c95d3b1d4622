"""`mnistlab train` as a job: the run folder (new, or one to resume), its data, its lifecycle, its figure.

The job decides what is trained (a new config, or a run's own settings with the allowed overrides), fetches
and verifies the data, creates or locks the run folder, and records how the run ended; the epochs are
training.runner's. Under torchrun, rank 0 fetches, creates the folder and writes; the other ranks get its
path and a silent writer, and agree on every failure so that all of them stop with one line.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnistlab.core import rundir as rd
from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.distributed import World, agree, from_main, restartable, world
from mnistlab.core.errors import CheckpointError, ConfigError, MnistlabError
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RunDir, open_run
from mnistlab.core.writer import writer_for
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.fetching import fetch
from mnistlab.jobs.folder import Log, PathLike, fixed, job_folder, new_folder, quiet, recorded_data

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["trace_run", "train_run"]

LEGACY_COMPLETED = ("completed", "finished")  # runs written before the one lifecycle said "finished"
# settings that change how a run is run, not what it computes: a resume may give them again (data_dir: where
# this machine keeps the dataset, whose files are verified against the same pins)
RESUMABLE_SETTINGS = ("device", "dist_timeout", "checkpoint_every", "data_dir")
RESUME_OVERRIDES = ("epochs", *RESUMABLE_SETTINGS)


def _check_overrides(stored: Any, overrides: dict[str, Any]) -> None:
    """A resumed run keeps its settings; only epochs, the device and how it is run may be given again."""
    for key, value in overrides.items():
        if key in RESUME_OVERRIDES or value is None:
            continue
        if getattr(stored, key) != value:
            raise ConfigError(
                f"cannot resume with {key}={value!r}: the run was started with {key}={getattr(stored, key)!r}"
            )


def _checkpoint_was_written(run: RunDir) -> int | None:
    """Epochs a run records as saved although last.pt is gone (None: no sign that a checkpoint was
    ever written). status.json counts epochs at every checkpoint; a second metrics row or a test
    result exists only after the first last.pt."""
    status = run.status()
    done = status.get("epochs_done")
    if isinstance(done, int) and not isinstance(done, bool) and done >= 1:
        return done
    rows = len(run.metrics())
    if status.get("state") in LEGACY_COMPLETED or (run / rd.TEST).exists() or rows >= 2:
        return max(rows, 1)
    return None


def _plan_resume(run: RunDir, overrides: dict[str, Any]) -> tuple[Any, dict | None]:
    """The run's settings with the allowed overrides, and its last checkpoint (None: start again)."""
    from mnistlab.training.checkpoint import load_checkpoint
    from mnistlab.training.config import load_run_config

    cfg = load_run_config(run / rd.CONFIG)
    _check_overrides(cfg, overrides)
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in RESUMABLE_SETTINGS and v is not None})
    if not (run / rd.LAST).exists():
        saved = _checkpoint_was_written(run)
        if saved is not None:
            raise CheckpointError(
                f"{run / rd.LAST}: missing, but this run had saved {saved} epoch(s); "
                f"it is not started over (that would silently discard them): restore last.pt, "
                f"or train a new run"
            )
        # stopped before its first last.pt: it starts again in place
        if overrides.get("epochs") is not None:
            cfg = cfg.replace(epochs=overrides["epochs"])
        return cfg, None
    state = load_checkpoint(run / rd.LAST)
    written_by = state["config"]["model"]
    if written_by != cfg.model:
        raise CheckpointError(f"{run / rd.LAST}: was written by model {written_by!r}, the run is {cfg.model!r}")
    done = int(state["epoch"])
    if overrides.get("epochs") is not None:
        cfg = cfg.replace(epochs=done + overrides["epochs"])
    elif run.status().get("state") in LEGACY_COMPLETED:
        raise ConfigError(
            f"{run.path}: already finished ({done} epoch{'' if done == 1 else 's'}); pass --epochs N to train N more"
        )
    return cfg, state


def train_run(
    config: Any = None,
    *,
    run_dir: PathLike | None = None,
    resume: PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    log: Log = _LOG,
    progress: bool = True,
    tensorboard: bool = True,
    on_epoch: Callable[[dict[str, float]], bool] | None = None,
    runs_base: PathLike = RUNS_DIR,
    figure: bool = True,
    resume_if_exists: bool = False,
) -> RunDir:
    """Train a new run (`config`, a TrainConfig) or continue one (`resume`); return its run directory.

    With `resume`, `overrides["epochs"]` means that many more epochs; without it the run finishes the
    epochs it was started with. The run directory is locked while training: a second trainer on it gets
    one line naming this one's pid. `on_epoch(row)` sees each epoch's metrics once they are saved; if it
    returns True the run stops there, `pruned` (a sweep's pruner). `resume_if_exists` (start or resume, for
    a scheduler that reruns the same command): a `run_dir` holding a run of the same configuration continues
    it, one already completed is left as it is, one of another configuration is refused; under torchrun
    --max-restarts N (N > 0) every attempt does this. The run draws its loss.png (`figure`)."""
    from mnistlab.training.config import TrainConfig

    if resume is not None and run_dir is not None:
        raise MnistlabError("--run-dir and --resume cannot be used together (--resume names the run)")
    if resume is not None and resume_if_exists:
        raise MnistlabError("--resume and --resume-if-exists cannot be used together (give --run-dir with the latter)")
    overrides = dict(overrides or {})
    # every path fixed as the job starts: a user's model that changes the working directory moves nothing
    run_dir, resume, runs_base = fixed(run_dir), fixed(resume), fixed(runs_base)
    w = world()
    if not w.is_main:
        log, progress = quiet, False
    try:
        if resume is None and (resume_if_exists or restartable()):
            existing = _existing_run(config or TrainConfig(), run_dir, overrides)
            if existing is not None and _completed(existing, log):
                return existing
            resume = existing.path if existing is not None else None
        return _train(
            config or TrainConfig(),
            run_dir,
            runs_base,
            resume,
            overrides,
            dict(log=log, progress=progress, on_epoch=on_epoch, tensorboard=tensorboard, w=w),
            figure,
        )
    finally:
        if w.distributed:
            from torch.distributed import destroy_process_group, is_initialized

            if is_initialized():
                # the DDP wrapper and its reducer must be gone before their process group is: freed later,
                # their destructors can wait forever on a group that no longer exists
                gc.collect()
                destroy_process_group()


def trace_run(run_dir: PathLike, folder: PathLike, *, log: Log = _LOG) -> Path:
    """A profiler trace (measure/trace.py) of a few training steps of the run in `run_dir`: its model's code, its
    levers, device and batch, on its own data, with a freshly seeded model and optimizer. Written to
    `folder`/RUN-NAME.trace.json; returns the path. Taken after the run, apart from it (the profiler slows each
    operator): the run's files and its epoch times are not touched."""
    from mnistlab.core.defaults import TRACE_STEPS, TRACE_WARMUP
    from mnistlab.measure.trace import events, trace_name, trace_steps, write_trace
    from mnistlab.training import runner
    from mnistlab.training.config import load_run_config

    run = open_run(fixed(run_dir))
    folder = fixed(folder)
    cfg = load_run_config(run / rd.CONFIG)
    root = data_root(cfg.data_dir)
    prep = runner.prepare(cfg, lambda: root, quiet, World(), run)
    batches = itertools.chain.from_iterable(prep.splits.train.batches(e) for e in itertools.count(1))

    def step() -> None:
        prep.step(*next(batches))

    data = trace_steps(step, prep.device, TRACE_STEPS, TRACE_WARMUP)
    path = write_trace(data, folder, trace_name(run.path.name))
    log(f"trace: {TRACE_STEPS} training steps of {cfg.model} on {prep.device.type}, {events(data):,} events: {path}")
    return path


def _existing_run(cfg: Any, run_dir: PathLike | None, overrides: dict[str, Any]) -> RunDir | None:
    """Start or resume: the run in `run_dir` if it holds one (None: start it). Its configuration must be
    `cfg`'s but for how it is run (the device, the timeout, mid-epoch checkpoints), which `overrides` takes."""
    from mnistlab.training.config import load_run_config

    if run_dir is None:
        raise ConfigError(
            "--resume-if-exists (and torchrun --max-restarts) needs --run-dir: the run directory "
            "that a rerun of the same command continues"
        )
    if not (Path(run_dir) / rd.CONFIG).is_file():
        return None
    run = open_run(run_dir)
    stored = load_run_config(run / rd.CONFIG).to_dict()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_SETTINGS and stored[key] != value:
            raise ConfigError(
                f"{run.path}: holds a run with {key}={stored[key]!r}, this command has {key}={value!r}; "
                f"it continues only a run of the same configuration (choose another --run-dir)"
            )
        if key in RESUMABLE_SETTINGS:
            overrides[key] = value
    return run


def _completed(run: RunDir, log: Log) -> bool:
    if run.status().get("state") not in LEGACY_COMPLETED:
        return False
    log(f"{run.path}: already completed; nothing to do")
    return True


def _recorded_threads(run: RunDir, state: dict | None) -> int | None:
    """The thread count a --deterministic run computed with: its last epoch's, else (a kill inside its first
    epoch) the one its env.json recorded as it started; None before anything was recorded."""
    if state is not None and state["history"] and "threads" in state["history"][-1]:
        return int(state["history"][-1]["threads"])
    recorded = run.env().get("torch_threads") if state is not None else None
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else None


def _resume_root(cfg: Any, overrides: dict[str, Any]) -> tuple[Path, bool]:
    """Where a resumed run reads its data, as an absolute path, and whether it may fetch there: into the data
    root the user gives (--data-dir, else $MNISTLAB_DATA or the cache), never into one that only the run's
    config.json names (a file anyone can edit: it is read, as eval reads it, not written)."""
    given = overrides.get("data_dir")
    recorded = cfg.data_dir if given is None else None
    return data_root(given or recorded), recorded is None


def _fetch(cfg: Any, root: Path, log: Log, w: World, may_fetch: bool = True, config: Path | None = None) -> Path:
    """The run's data root, its files fetched and verified by rank 0, then verified by every other rank
    (a machine without them: one line on all). Not `may_fetch`: only verified where they are."""
    spec = get_dataset(cfg.dataset)

    def error() -> MnistlabError | None:
        try:
            if may_fetch:
                fetch(spec, root, log=log)
            else:
                recorded_data(cfg.dataset, root, config or root, "a resume")
        except MnistlabError as e:
            return e
        return None

    agree(error() if w.is_main else None)
    agree(None if w.is_main else error())
    return root


def _train(
    cfg: Any,
    run_dir: PathLike | None,
    runs_base: PathLike,
    resume: PathLike | None,
    overrides: dict[str, Any],
    options: dict[str, Any],
    figure: bool,
) -> RunDir:
    from mnistlab.training import runner
    from mnistlab.training.modelspec import label

    w: World = options["w"]
    writer = writer_for(w)  # rank 0 writes; under torchrun the other ranks hold the silent writer
    if resume is not None:
        run = open_run(resume)
        plan: dict[str, Any] = {}

        def before(path: Path) -> None:  # under the lock, before any write: a refused resume changes nothing
            plan["cfg"], plan["state"] = _plan_resume(run, overrides)
            root, may_fetch = _resume_root(plan["cfg"], overrides)  # before the model's code runs
            plan["prepared"] = runner.prepare(
                plan["cfg"],
                lambda: _fetch(plan["cfg"], root, options["log"], w, may_fetch, run / rd.CONFIG),
                options["log"],
                w,
                run,
                _recorded_threads(run, plan["state"]) if plan["cfg"].deterministic else None,
            )
            runner.check_same_start(plan["state"], str(run.path), w)

        with job_folder(run.path, job="train", writer=writer, existing=True, lock=w.is_main, claim=before) as job:
            job.fields["epochs_done"] = int(plan["state"]["epoch"]) if plan["state"] else 0
            runner.train(job, plan["cfg"], plan["state"], plan["prepared"], **options)
            _figure(job.path, figure and w.is_main)
        return RunDir(job.path)
    # a new run: data errors surface before a run directory exists
    root = data_root(cfg.data_dir)  # absolute, before the model's code runs
    prepared = runner.prepare(cfg, lambda: _fetch(cfg, root, options["log"], w), options["log"], w)
    runner.check_same_start(None, str(run_dir), w)
    made: Path | MnistlabError | None = None
    if w.is_main:  # rank 0 creates the directory and tells the others where it is, or why it failed
        try:
            made = new_folder(
                run_dir, runs_base, f"{label(cfg.model)}-{cfg.dataset}", option="--run-dir", resumable=True
            )
        except MnistlabError as e:
            made = e
    made = from_main(made)
    if isinstance(made, MnistlabError):
        raise made
    assert made is not None

    def claim(path: Path) -> None:  # another trainer took this --run-dir between its creation and our lock
        if (path / rd.CONFIG).exists():
            raise CheckpointError(f"{path}: already holds a run; use --resume {path} to continue it")

    with job_folder(
        made, job="train", writer=writer, existing=True, lock=w.is_main, claim=claim if w.is_main else None
    ) as job:
        job.fields["epochs_done"] = 0
        runner.train(job, cfg, None, prepared, **options)
        _figure(job.path, figure and w.is_main)
    return RunDir(job.path)


def _figure(path: Path, draw: bool) -> None:
    """loss.png, from the run's own files (a run with no finished epoch has none to draw)."""
    run = RunDir(path)
    if draw and run.metrics():
        from mnistlab.report.plots import plot_runs

        plot_runs([run], run / "loss.png")

"""A training run: data, model, epochs, checkpoints and the run directory, start or resume.

The per-step work lives in `loop.py` and `levers.py`; this module decides when things are saved.
Order per epoch: train, validate, metrics.csv and steps.csv (rewritten whole), best.pt (if
better), last.pt (with the whole history). Every file is replaced atomically, so a run killed
at any point is readable (eval, plot), and --resume rewinds the CSVs to last.pt's history
before going on, so a CSV row written ahead of its checkpoint is trained again, identically.
TensorBoard's event files (tblog.py) follow the CSVs, and are rewound the same way.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributed import destroy_process_group, is_initialized
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mnistlab.core import rundir as rd_files
from mnistlab.training.checkpoint import (load_checkpoint, load_model_state, load_optimizer_state, restore_rng,
                                         save_checkpoint)
from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.device import describe_choice, device_error_message, enable_deterministic, resolve_device
from mnistlab.training.config import TrainConfig, load_run_config
from mnistlab.core.stopping import StopRequests
from mnistlab.core import threads
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.core.environment import environment, epoch_load, load_snapshot, precision_environment
from mnistlab.core.errors import (CheckpointError, ConfigError, DeviceError, DistributedError, DivergenceError,
                                  MnistlabError, ModelError)
from mnistlab.core.failures import as_model_error, outcome
from mnistlab.core.writer import Writer, writer_for
from mnistlab.training.evaluation import evaluate
from mnistlab.core.faults import kill_point
from mnistlab.data.fetching import fetch
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import Splits, make_splits
from mnistlab.training.models import create_model, model_code, model_code_for_run
from mnistlab.training.modelspec import ModelCode, label, record_in_run
from mnistlab.training.tblog import open_log
from mnistlab.core.atomicfile import remove_leftovers
from mnistlab.core.distributed import (World, agree, from_main, init_process_group, lost_peer_line, restartable,
                                       world)
from mnistlab.core.lock import FolderLock
from mnistlab.core.rundir import RunDir, create_run_dir, open_run
from mnistlab.training.levers import WARMUP_DEVICES, Levers, TrainStep, make_step, prepare_model, warm_up
from mnistlab.training.loop import EpochProgress, make_optimizer, set_fused_for, train_epoch

Log = Callable[[str], None]
EpochHook = Callable[[dict[str, float]], bool]


COMPLETED = "completed"
LEGACY_COMPLETED = ("completed", "finished")  # runs written before the one lifecycle said "finished"
# settings that change how a run is run, not what it computes: a resume may give them again
RESUMABLE_SETTINGS = ("device", "dist_timeout", "checkpoint_every")
RESUME_OVERRIDES = ("epochs", *RESUMABLE_SETTINGS)


def _set_status(run: RunDir, writer: Writer, state: str, **extra: Any) -> None:
    writer.json(run / rd_files.STATUS, {"state": state, **extra})


def check_resume_overrides(stored: TrainConfig, overrides: dict[str, Any]) -> None:
    """A resumed run keeps its settings; only epochs, the device and how it is run may be given again."""
    for key, value in overrides.items():
        if key in RESUME_OVERRIDES or value is None:
            continue
        if getattr(stored, key) != value:
            raise ConfigError(f"cannot resume with {key}={value!r}: the run was started with "
                              f"{key}={getattr(stored, key)!r}")


def _checkpoint_was_written(run: RunDir) -> int | None:
    """Epochs a run records as saved although last.pt is gone (None: no sign that a checkpoint was
    ever written). status.json counts epochs at every checkpoint; a second metrics row or a test
    result exists only after the first last.pt."""
    status = run.status()
    done = status.get("epochs_done")
    if isinstance(done, int) and not isinstance(done, bool) and done >= 1:
        return done
    rows = len(run.metrics())
    if status.get("state") in LEGACY_COMPLETED or (run / rd_files.TEST).exists() or rows >= 2:
        return max(rows, 1)
    return None


def _plan_resume(run: RunDir, overrides: dict[str, Any]) -> tuple[TrainConfig, dict | None]:
    """The run's settings with the allowed overrides, and its last checkpoint (None: start again)."""
    cfg = load_run_config(run / rd_files.CONFIG)
    check_resume_overrides(cfg, overrides)
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in RESUMABLE_SETTINGS and v is not None})
    if not (run / rd_files.LAST).exists():
        saved = _checkpoint_was_written(run)
        if saved is not None:
            raise CheckpointError(f"{run / rd_files.LAST}: missing, but this run had saved {saved} epoch(s); "
                                  f"it is not started over (that would silently discard them): restore last.pt, "
                                  f"or train a new run")
        # stopped before its first last.pt: it starts again in place
        if overrides.get("epochs") is not None:
            cfg = cfg.replace(epochs=overrides["epochs"])
        return cfg, None
    state = load_checkpoint(run / rd_files.LAST)
    written_by = state["config"]["model"]
    if written_by != cfg.model:
        raise CheckpointError(f"{run / rd_files.LAST}: was written by model {written_by!r}, the run is {cfg.model!r}")
    done = int(state["epoch"])
    if overrides.get("epochs") is not None:
        cfg = cfg.replace(epochs=done + overrides["epochs"])
    elif run.status().get("state") in LEGACY_COMPLETED:
        raise ConfigError(f"{run.path}: already finished ({done} epoch{'' if done == 1 else 's'}); pass --epochs N to train N more")
    return cfg, state


def train(config: TrainConfig | None = None, *, run_dir: str | os.PathLike | None = None,
          runs_base: str | os.PathLike = RUNS_DIR, resume: str | os.PathLike | None = None,
          overrides: dict[str, Any] | None = None, log: Log = print, progress: bool = True,
          on_epoch: EpochHook | None = None, tensorboard: bool = True, resume_if_exists: bool = False) -> RunDir:
    """Train a new run (`config`) or continue one (`resume`); return its run directory.

    With `resume`, `overrides["epochs"]` means that many more epochs; without it the run
    finishes the epochs it was started with. The run directory is locked while training:
    a second trainer on it gets a one-line error naming this one's pid. `on_epoch(row)` sees each
    epoch's metrics once they are saved; if it returns True the run stops there, `pruned` (a sweep's pruner).
    `tensorboard`: write TensorBoard event files into the run directory (see tblog.py).
    `resume_if_exists` (start or resume, for a scheduler that reruns the same command): a `run_dir` that
    holds a run of the same configuration continues it, one already completed is left as it is, and one of
    another configuration is refused. Under torchrun --max-restarts N (N > 0) every attempt does this.

    Started by torchrun, each process trains on its shard of every batch (DistributedDataParallel);
    rank 0 alone owns the run directory, writes and prints.
    """
    overrides = dict(overrides or {})
    w = world()
    if not w.is_main:
        log, progress = (lambda m: None), False
    try:
        if resume is None and (resume_if_exists or restartable()):
            existing = _existing_run(config or TrainConfig(), run_dir, overrides)
            if existing is not None and _completed(existing, log):
                return existing
            resume = existing.path if existing is not None else None
        return _train(config, run_dir, runs_base, resume, overrides, log, progress, on_epoch, tensorboard, w)
    finally:
        if w.distributed and is_initialized():
            # the DDP wrapper and its reducer must be gone before their process group is: freed later,
            # their destructors can wait forever on a group that no longer exists
            gc.collect()
            destroy_process_group()


def _existing_run(cfg: TrainConfig, run_dir: str | os.PathLike | None, overrides: dict[str, Any]) -> RunDir | None:
    """Start or resume: the run in `run_dir` if it holds one (None: start it). Its configuration must be
    `cfg`'s but for how it is run (the device, the timeout, mid-epoch checkpoints), which `overrides` takes."""
    if run_dir is None:
        raise ConfigError("--resume-if-exists (and torchrun --max-restarts) needs --run-dir: the run directory "
                          "that a rerun of the same command continues")
    if not (Path(run_dir) / rd_files.CONFIG).is_file():
        return None
    run = open_run(run_dir)
    stored = load_run_config(run / rd_files.CONFIG).to_dict()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE_SETTINGS and stored[key] != value:
            raise ConfigError(f"{run.path}: holds a run with {key}={stored[key]!r}, this command has {key}={value!r}; "
                              f"it continues only a run of the same configuration (choose another --run-dir)")
        if key in RESUMABLE_SETTINGS:
            overrides[key] = value
    return run


def _completed(run: RunDir, log: Log) -> bool:
    if run.status().get("state") not in LEGACY_COMPLETED:
        return False
    log(f"{run.path}: already completed; nothing to do")
    return True


def _train(config: TrainConfig | None, run_dir: str | os.PathLike | None, runs_base: str | os.PathLike,
           resume: str | os.PathLike | None, overrides: dict[str, Any], log: Log, progress: bool,
           on_epoch: EpochHook | None, tensorboard: bool, w: World) -> RunDir:
    writer = writer_for(w)  # rank 0 writes; under torchrun the other ranks hold the silent writer
    if resume is not None:
        run = open_run(resume)
        with _ownership(run, w):
            cfg, state = _plan_resume(run, overrides)
            prepared = _prepare(cfg, log, w, run)
            _check_same_start(state, str(run.path), w)
            return _train_locked(run, cfg, state, prepared, log, progress, on_epoch, w, tensorboard, writer)
    cfg = config or TrainConfig()
    prepared = _prepare(cfg, log, w)  # data errors surface before a run directory exists
    _check_same_start(None, str(run_dir), w)
    made: RunDir | MnistlabError | None = None
    if w.is_main:  # rank 0 creates the directory and tells the others where it is, or why it failed
        try:
            made = create_run_dir(run_dir, runs_base, f"{label(cfg.model)}-{cfg.dataset}", option="--run-dir",
                                  resumable=True)
        except MnistlabError as e:
            made = e
    made = from_main(made)
    if isinstance(made, MnistlabError):
        raise made
    assert made is not None
    run = made
    with _ownership(run, w):
        if w.is_main and (run / rd_files.CONFIG).exists():  # another trainer took this --run-dir first
            raise CheckpointError(f"{run.path}: already holds a run; use --resume {run.path} to continue it")
        return _train_locked(run, cfg, None, prepared, log, progress, on_epoch, w, tensorboard, writer)


def _check_same_start(state: dict | None, where: str, w: World) -> None:
    """Every process of a resumed job must start from rank 0's checkpoint: each reads the run directory,
    so a machine that does not share it would train from another point. One line on every rank instead."""
    if not w.distributed:
        return
    mine = (int(state["epoch"]), _progress(state).steps if _progress(state) else 0) if state else None
    main = from_main(mine)
    agree(None if mine == main else DistributedError(
        f"rank {w.rank} sees {where} at {mine}, rank 0 at {main} (epochs, steps; None: a new run): under torchrun a resumed "
        f"run's directory must be the same for every machine (a shared filesystem)"))


def _progress(state: dict[str, Any]) -> EpochProgress | None:
    """The steps of the epoch under way that a mid-epoch checkpoint holds (None: it ends an epoch)."""
    partial = state.get("partial")
    return None if partial is None else EpochProgress(**partial)


@contextlib.contextmanager
def _ownership(run: RunDir, w: World) -> Iterator[None]:
    """Rank 0 locks the run directory and, as its owner, removes what a killed writer left."""
    if not w.is_main:
        yield
        return
    with FolderLock(run.path, what="run"):
        remove_leftovers(run.path, names=rd_files.RUN_FILES)
        yield


@dataclass
class _Prepared:
    device: torch.device
    spec: DatasetSpec
    splits: Splits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    code: ModelCode  # where the model came from (recorded in the run)
    step: TrainStep  # the training step with the config's speed levers (on the DDP wrapper under torchrun)


def _prepare(cfg: TrainConfig, log: Log, w: World, run: RunDir | None = None) -> _Prepared:
    """Device, verified data on it, and a freshly seeded model and optimizer. Resuming `run`,
    the model's code is the run's own (a file spec: its verified copy)."""
    code = model_code(cfg.model) if run is None else model_code_for_run(
        run.path, cfg.model, check_original=True, fallback_to_spec=not (run / rd_files.LAST).exists())
    if cfg.deterministic:
        enable_deterministic()  # before any CUDA work: it sets CUBLAS_WORKSPACE_CONFIG
        threads.pin_for_repeatability()  # the same thread count, so the same rounding, in every epoch
    device = resolve_device(cfg.device)
    levers = Levers.of(cfg)
    levers.check(device)  # a lever this device lacks fails before any data work
    if w.distributed and levers.cuda_graphs:
        raise ConfigError("--cuda-graphs cannot run under torchrun (a captured step would not include DDP's "
                          "all-reduce); drop one of the two")
    spec = get_dataset(cfg.dataset)
    root = data_root(cfg.data_dir)
    if w.distributed:
        if cfg.batch_size % w.size:
            raise ConfigError(f"--batch-size {cfg.batch_size} is the global batch: it must divide evenly over "
                              f"{w.size} processes")
        if device.type == "cuda":
            device = torch.device("cuda", w.local_rank)
            torch.cuda.set_device(device)
        init_process_group(w, device.type, cfg.dist_timeout)
        log(f"data parallel: {w.size} processes, {cfg.batch_size // w.size} samples each per step of "
            f"{cfg.batch_size} ({'NCCL' if device.type == 'cuda' else 'gloo'})")
    agree(_fetch_error(spec, root, log) if w.is_main else None)  # the others verify what rank 0 fetched
    agree(None if w.is_main else _fetch_error(spec, root, log))  # data missing on one machine: a line on all
    try:
        splits = make_splits(spec, root, batch_size=cfg.batch_size, val_fraction=cfg.val_fraction,
                             seed=cfg.seed, device=device, subset=cfg.subset, shard=(w.rank, w.size))
        torch.manual_seed(cfg.seed)
        model = prepare_model(create_model(code, spec.shape), levers, device, sample_shape=spec.shape.sample,
                              name=cfg.model)
    except RuntimeError as e:
        message = device_error_message(e, device)
        if message is None:
            raise
        raise DeviceError(message) from None
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum)
    # under torchrun the wrapper averages gradients over the processes; checkpoints keep the plain model
    train_model = model if not w.distributed else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    step = make_step(train_model, optimizer, levers, device, batch_size=cfg.batch_size // w.size,
                     sample_shape=tuple(splits.train.x.shape[1:]))
    return _Prepared(device, spec, splits, model, optimizer, code, step)


def _fetch_error(spec: DatasetSpec, root, log: Log) -> MnistlabError | None:
    try:
        fetch(spec, root, log=log)
    except MnistlabError as e:
        return e
    return None


def _bars_redraw_in_place() -> bool:
    """A terminal redraws a bar in place, and a notebook shows a widget (tqdm.auto, when ipywidgets is
    installed); a log file, a pipe or a notebook without ipywidgets (where tqdm.auto falls back to the
    text bar) would get every redraw, '\r' after '\r', so there the epoch lines are the progress."""
    from tqdm.notebook import tqdm as widget_bar

    try:
        if sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    return issubclass(tqdm, widget_bar)


def _end(run: RunDir, writer: Writer, e: BaseException, cfg: TrainConfig, device: torch.device, stage: str,
         saved: int, best_epoch: int, log: Log) -> BaseException | None:
    """Record how the run ended, whatever ended it (core.failures), and return the one-line error to
    raise instead of `e` (None: raise `e` itself: a signal, or a bug that keeps its traceback)."""
    batch = cfg.batch_size if stage in ("warm-up", "training") else None  # the one the user can change
    model_error = as_model_error(e, cfg.model, f"during {stage}")
    end = outcome(model_error or e, device=device, batch_size=batch)
    line = end.line
    if isinstance(e, DivergenceError):
        line = (f"{e}; {run.path}: best.pt from epoch {best_epoch} kept" if best_epoch
                else f"{e}; {run.path}: no epoch finished, no checkpoint written")
    elif end.state == "failed" and line is not None and not isinstance(e, MnistlabError):
        kept = (f"checkpoints kept (mnistlab train --resume {run.path} continues from last.pt)"
                if (run / rd_files.LAST).exists() else "no epoch finished, no checkpoint written")
        line = f"{line} (during {stage}); {run.path}: {kept}"
    extra: dict[str, Any] = {"epochs_done": saved}
    if end.state in ("failed", "diverged"):
        extra["message"] = line or f"{type(e).__name__}: {e}"
        extra["best_epoch"] = best_epoch
    try:
        _set_status(run, writer, end.state, **extra)
    except MnistlabError:  # the disk that failed the run may refuse this too: the first error is the one to say
        pass
    if isinstance(e, KeyboardInterrupt):
        log(f"\n{end.state} after epoch {saved} (last.pt holds epoch {saved}); continue with: "
            f"mnistlab train --resume {run.path}" if saved else
            f"\n{end.state} before the first checkpoint; start it again with: mnistlab train --resume {run.path}")
        return None
    if line is None:
        return None
    if isinstance(e, MnistlabError) and line == str(e):
        return None  # already the one line
    if model_error is not None:
        return ModelError(line)
    if lost_peer_line(e) is not None:
        return DistributedError(line)
    return DivergenceError(line) if isinstance(e, DivergenceError) else DeviceError(line)


def _train_locked(run: RunDir, cfg: TrainConfig, state: dict | None, prep: _Prepared, log: Log,
                  progress: bool, on_epoch: EpochHook | None, w: World, tensorboard: bool, writer: Writer) -> RunDir:
    with StopRequests() as stops:
        return _train_until_stopped(run, cfg, state, prep, log, progress, on_epoch, w, tensorboard, stops, writer)


def _train_until_stopped(run: RunDir, cfg: TrainConfig, state: dict | None, prep: _Prepared, log: Log,
                         progress: bool, on_epoch: EpochHook | None, w: World, tensorboard: bool,
                         stops: StopRequests, writer: Writer) -> RunDir:
    device, spec, splits, model, optimizer = prep.device, prep.spec, prep.splits, prep.model, prep.optimizer
    done = int(state["epoch"]) if state else 0
    partial = _progress(state) if state else None  # a resume from a mid-epoch checkpoint
    progress = progress and _bars_redraw_in_place()
    if state is None:
        history: list[dict[str, float]] = []
        step_log: list[dict[str, float]] = []
        best_val, best_epoch = math.inf, 0
    else:
        load_model_state(model, state, run / rd_files.LAST)
        load_optimizer_state(optimizer, state, run / rd_files.LAST)
        set_fused_for(optimizer, device)
        prep.step.load_state_dict(state)
        restore_rng(state, run / rd_files.LAST)
        history, step_log = list(state["history"]), list(state["step_log"])
        best_val, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        log(f"resuming {run.path} after epoch {done} of {cfg.epochs}"
            + (f" and {partial.steps} steps of epoch {done + 1}" if partial else ""))
    writer.json(run / rd_files.CONFIG, cfg.to_dict())
    record_in_run(run.path, prep.code, writer)  # a file spec: its copy and SHA-256
    env = {**environment(), **precision_environment(device), "device": str(device),
           "load_start": load_snapshot()}  # load: was the machine busy?
    writer.json(run / rd_files.ENV, env)
    writer.csv(run / rd_files.METRICS, rd_files.METRIC_FIELDS, history)
    writer.csv(run / rd_files.STEPS, rd_files.STEP_FIELDS, step_log)
    tb = open_log(run.path, history, step_log, enabled=tensorboard and writer.writes, log=log)  # rewound to the checkpoint, as the CSVs
    _set_status(run, writer, "running", epochs_done=done)
    log(describe_choice(cfg.device, device))
    log(f"{cfg.model} on {cfg.dataset}: {splits.train.num_samples} train / {splits.val.num_samples} val / "
        f"{splits.test.num_samples} test samples, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum}, "
        f"{prep.step.levers.describe()}")

    def checkpoint_state(epoch: int, within: EpochProgress | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "global_step": int(history[-1]["global_step"]) if history else 0,
            "config": cfg.to_dict(), "history": history, "step_log": step_log,
            "best_val_loss": best_val, "best_epoch": best_epoch, "rng_cpu": torch.get_rng_state(),
            **prep.step.state_dict(), **({"partial": vars(within)} if within else {}),
        }

    def save_within(within: EpochProgress) -> None:
        """A mid-epoch last.pt (--checkpoint-every); best.pt and the CSVs wait for the epoch's end."""
        with stops.deferred():
            save_checkpoint(run / rd_files.LAST, checkpoint_state(saved, within), writer)
            _set_status(run, writer, "running", epochs_done=saved, steps_done=within.steps)
        kill_point("step-checkpoint")

    global_step = int(history[-1]["global_step"]) if history else 0
    session = int(history[-1].get("session", 1)) + 1 if history else 1  # one per train/resume invocation
    stopped_early = False
    saved = done  # the epoch last.pt holds
    stage = "warm-up"  # named in a device failure's message
    try:
        warmup_s = None  # compile, graph capture and first-call costs, timed apart from epoch 1
        levers = prep.step.levers
        if (device.type in WARMUP_DEVICES or levers.compile != "off" or levers.cuda_graphs) and done < cfg.epochs:
            n = min(splits.train.batch_size, splits.train.num_samples)
            warmup_s = warm_up(prep.step, splits.train.x[:n].clone(), splits.train.y[:n].clone(),
                               evaluation=splits.val.x[:splits.val.batch_size] if splits.val.num_samples else None)
            env["warmup_seconds"] = warmup_s
            writer.json(run / rd_files.ENV, env)
            _set_status(run, writer, "running", epochs_done=done, warmup_seconds=warmup_s)
            log(f"warm-up on {device.type}: {warmup_s:.2f} s (untimed steps, compile and capture included, then "
                f"undone; not counted in epoch {done + 1})")
        for epoch in range(done + 1, cfg.epochs + 1):
            stage = "training"
            chosen = threads.refresh()  # the load may have changed since the last epoch
            steps = len(splits.train) if cfg.max_steps is None else min(cfg.max_steps, len(splits.train))
            with tqdm(total=min(steps * cfg.batch_size, splits.train.num_samples), unit="sample", unit_scale=True,
                      desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress) as bar:
                stats = train_epoch(model, optimizer, splits.train, epoch=epoch, global_step=global_step,
                                    log_every=cfg.log_every, max_steps=cfg.max_steps, progress=bar,
                                    distributed=w.distributed, step=prep.step, resume_from=partial,
                                    checkpoint_every=cfg.checkpoint_every, on_checkpoint=save_within)
            partial = None
            global_step += stats.steps
            kill_point("epoch-end")
            stage = "validation"
            val = evaluate(model, splits.val, len(spec.classes), distributed=w.distributed)
            row = {
                "epoch": epoch, "train_loss": stats.train_loss, "val_loss": val.loss,
                "val_accuracy": val.accuracy, "train_seconds": stats.seconds, "val_seconds": val.seconds,
                "epoch_seconds": stats.seconds + val.seconds, "samples_per_s": stats.samples * w.size / stats.seconds,
                "steps": stats.steps, "global_step": global_step, "session": session,
                **epoch_load(),  # was the machine busy during this epoch?
                "threads": chosen.threads,
                **({"warmup_s": warmup_s} if warmup_s is not None and epoch == done + 1 else {}),
            }
            with stops.deferred():  # a stop request waits until the epoch is saved and counted
                history.append(row)
                step_log.extend({"step": s, "epoch": epoch, "train_loss": v} for s, v in stats.step_log)
                writer.csv(run / rd_files.METRICS, rd_files.METRIC_FIELDS, history)
                writer.csv(run / rd_files.STEPS, rd_files.STEP_FIELDS, step_log)
                tb.epoch(row, stats.step_log)
                if val.loss < best_val:
                    best_val, best_epoch = val.loss, epoch
                    save_checkpoint(run / rd_files.BEST, checkpoint_state(epoch), writer)
                save_checkpoint(run / rd_files.LAST, checkpoint_state(epoch), writer)
                saved = epoch
                _set_status(run, writer, "running", epochs_done=saved)
            kill_point("after-checkpoint")
            log(f"epoch {epoch}/{cfg.epochs}  train loss {stats.train_loss:.4f}  val loss {val.loss:.4f}  "
                f"val acc {val.accuracy:.2%}  {row['epoch_seconds']:.2f} s "
                f"(train {stats.seconds:.2f} s, {row['samples_per_s']:,.0f} samples/s)")
            if cfg.early_stop is not None and epoch - best_epoch >= cfg.early_stop:
                log(f"early stop: no better validation loss for {cfg.early_stop} epochs "
                    f"(best {best_val:.4f} at epoch {best_epoch}; best.pt kept)")
                stopped_early = True
                break
            if on_epoch is not None and on_epoch(row):
                tb.close()
                _set_status(run, writer, "pruned", epochs_done=len(history), best_epoch=best_epoch)
                log(f"pruned after epoch {epoch}: the sweep's pruner stopped it (no test evaluation)")
                return run
        writer.json(run / rd_files.ENV, {**env, "load_end": load_snapshot()})
        kill_point("final-eval")
        stage = "the final test evaluation"
        test = evaluate(model, splits.test, len(spec.classes), distributed=w.distributed)
        stage = "writing the results"
        writer.json(run / rd_files.TEST, {**test.to_dict(), "epoch": len(history), "checkpoint": "last",
                                          "classes": list(spec.classes)})
        tb.finish(cfg.to_dict(), test.to_dict(), global_step)
        log(f"test: loss {test.loss:.4f}  accuracy {test.accuracy:.2%} ({test.correct}/{test.total})  "
            f"in {test.seconds:.2f} s")
        _set_status(run, writer, COMPLETED, epochs_done=len(history), stopped_early=stopped_early,
                    best_epoch=best_epoch)
        return run
    except BaseException as e:  # every way out records a final state: no run is left "running"
        tb.close()
        with stops.deferred():  # a second signal does not cut the record of the first short
            instead = _end(run, writer, e, cfg, device, stage, saved, best_epoch, log)
        if instead is None:
            raise
        raise instead from None

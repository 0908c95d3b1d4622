"""A training run: data, model, epochs, checkpoints and the run directory, start or resume.

The per-step work lives in `trainloop.py`; this module decides when things are saved.
Order per epoch: train, validate, metrics.csv and steps.csv (rewritten whole), best.pt (if
better), last.pt (with the whole history). Every file is replaced atomically, so a run killed
at any point is readable (eval, plot), and --resume rewinds the CSVs to last.pt's history
before going on, so a CSV row written ahead of its checkpoint is trained again, identically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from mnistlab.core import rundir as rd_files
from mnistlab.training.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.device import describe_choice, resolve_device
from mnistlab.training.config import TrainConfig
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.core.environment import environment
from mnistlab.core.errors import CheckpointError, ConfigError, DivergenceError
from mnistlab.training.evaluation import evaluate
from mnistlab.core.faults import kill_point
from mnistlab.data.fetching import fetch
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.loader import Splits, make_splits
from mnistlab.training.models import create_model
from mnistlab.core.atomicfile import remove_leftovers
from mnistlab.core.lock import FolderLock
from mnistlab.core.rundir import RunDir, create_run_dir, open_run, write_csv, write_json
from mnistlab.training.levers import Levers, TrainStep, make_step, prepare_model
from mnistlab.training.loop import make_optimizer, train_epoch

Log = Callable[[str], None]


def _set_status(run: RunDir, state: str, **extra: Any) -> None:
    write_json(run / rd_files.STATUS, {"state": state, **extra})


def check_resume_overrides(stored: TrainConfig, overrides: dict[str, Any]) -> None:
    """A resumed run keeps its settings; only epochs and the device may be given again."""
    for key, value in overrides.items():
        if key in ("epochs", "device") or value is None:
            continue
        if getattr(stored, key) != value:
            raise ConfigError(f"cannot resume with {key}={value!r}: the run was started with "
                              f"{key}={getattr(stored, key)!r}")


def _plan_resume(run: RunDir, overrides: dict[str, Any]) -> tuple[TrainConfig, dict | None]:
    """The run's settings with the allowed overrides, and its last checkpoint (None: start again)."""
    cfg = TrainConfig.from_dict(run.config())
    check_resume_overrides(cfg, overrides)
    if overrides.get("device") is not None:
        cfg = cfg.replace(device=overrides["device"])
    if not (run / rd_files.LAST).exists() and len(run.metrics()) <= 1:
        # stopped before its first last.pt (metrics.csv is written just before it): it starts again in place
        if overrides.get("epochs") is not None:
            cfg = cfg.replace(epochs=overrides["epochs"])
        return cfg, None
    state = load_checkpoint(run / rd_files.LAST)
    written_by = state.get("config", {}).get("model")
    if written_by != cfg.model:
        raise CheckpointError(f"{run / rd_files.LAST}: was written by model {written_by!r}, the run is {cfg.model!r}")
    done = int(state["epoch"])
    if overrides.get("epochs") is not None:
        cfg = cfg.replace(epochs=done + overrides["epochs"])
    elif run.status().get("state") == "finished":
        raise ConfigError(f"{run.path}: already finished ({done} epochs); pass --epochs N to train N more")
    return cfg, state


def train(config: TrainConfig | None = None, *, run_dir: str | os.PathLike | None = None,
          runs_base: str | os.PathLike = RUNS_DIR, resume: str | os.PathLike | None = None,
          overrides: dict[str, Any] | None = None, log: Log = print, progress: bool = True) -> RunDir:
    """Train a new run (`config`) or continue one (`resume`); return its run directory.

    With `resume`, `overrides["epochs"]` means that many more epochs; without it the run
    finishes the epochs it was started with. The run directory is locked while training:
    a second trainer on it gets a one-line error naming this one's pid.
    """
    overrides = dict(overrides or {})
    if resume is not None:
        run = open_run(resume)
        with FolderLock(run.path, what="run"):
            remove_leftovers(run.path)  # the owner alone cleans up after a killed writer
            cfg, state = _plan_resume(run, overrides)
            return _train_locked(run, cfg, state, _prepare(cfg, log), log, progress)
    cfg = config or TrainConfig()
    prepared = _prepare(cfg, log)  # data errors surface before a run directory exists
    run = create_run_dir(run_dir, runs_base, f"{cfg.model}-{cfg.dataset}")
    with FolderLock(run.path, what="run"):
        if (run / rd_files.CONFIG).exists():  # another trainer took this --run-dir first and finished
            raise CheckpointError(f"{run.path}: already holds a run; use --resume {run.path} to continue it")
        remove_leftovers(run.path)
        return _train_locked(run, cfg, None, prepared, log, progress)


@dataclass
class _Prepared:
    device: torch.device
    spec: DatasetSpec
    splits: Splits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: TrainStep  # the training step with the config's speed levers


def _prepare(cfg: TrainConfig, log: Log) -> _Prepared:
    """Device, verified data on it, and a freshly seeded model and optimizer."""
    device = resolve_device(cfg.device)
    levers = Levers.of(cfg)
    levers.check(device)  # a lever this device lacks fails before any data work
    spec = get_dataset(cfg.dataset)
    root = data_root(cfg.data_dir)
    fetch(spec, root, log=log)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    splits = make_splits(spec, root, batch_size=cfg.batch_size, val_fraction=cfg.val_fraction,
                         seed=cfg.seed, device=device, subset=cfg.subset)
    torch.manual_seed(cfg.seed)
    model = prepare_model(create_model(cfg.model), levers, device)
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum)
    step = make_step(model, optimizer, levers, device, batch_size=cfg.batch_size,
                     sample_shape=tuple(splits.train.x.shape[1:]))
    return _Prepared(device, spec, splits, model, optimizer, step)


def _train_locked(run: RunDir, cfg: TrainConfig, state: dict | None, prep: _Prepared, log: Log,
                  progress: bool) -> RunDir:
    device, spec, splits, model, optimizer = prep.device, prep.spec, prep.splits, prep.model, prep.optimizer
    done = int(state["epoch"]) if state else 0
    if state is None:
        history: list[dict[str, float]] = []
        step_log: list[dict[str, float]] = []
        best_val, best_epoch = math.inf, 0
    else:
        load_model_state(model, state, run / rd_files.LAST)
        optimizer.load_state_dict(state["optimizer"])
        prep.step.load_state_dict(state)
        torch.set_rng_state(state["rng_cpu"])
        history, step_log = list(state["history"]), list(state["step_log"])
        best_val, best_epoch = float(state["best_val_loss"]), int(state["best_epoch"])
        log(f"resuming {run.path} after epoch {done} of {cfg.epochs}")
    write_json(run / rd_files.CONFIG, cfg.to_dict())
    write_json(run / rd_files.ENV, {**environment(), "device": str(device)})
    write_csv(run / rd_files.METRICS, rd_files.METRIC_FIELDS, history)
    write_csv(run / rd_files.STEPS, rd_files.STEP_FIELDS, step_log)
    _set_status(run, "running", epochs_done=done)
    log(describe_choice(cfg.device, device))
    log(f"{cfg.model} on {cfg.dataset}: {splits.train.num_samples} train / {splits.val.num_samples} val / "
        f"{splits.test.num_samples} test samples, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum}, "
        f"{prep.step.levers.describe()}")

    def checkpoint_state(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "global_step": int(history[-1]["global_step"]) if history else 0,
            "config": cfg.to_dict(), "history": history, "step_log": step_log,
            "best_val_loss": best_val, "best_epoch": best_epoch, "rng_cpu": torch.get_rng_state(),
            **prep.step.state_dict(),
        }

    global_step = int(history[-1]["global_step"]) if history else 0
    session = int(history[-1].get("session", 1)) + 1 if history else 1  # one per train/resume invocation
    stopped_early = False
    try:
        for epoch in range(done + 1, cfg.epochs + 1):
            steps = len(splits.train) if cfg.max_steps is None else min(cfg.max_steps, len(splits.train))
            with tqdm(total=min(steps * cfg.batch_size, splits.train.num_samples), unit="sample", unit_scale=True,
                      desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not progress) as bar:
                stats = train_epoch(model, optimizer, splits.train, epoch=epoch, global_step=global_step,
                                    log_every=cfg.log_every, max_steps=cfg.max_steps, progress=bar, step=prep.step)
            global_step += stats.steps
            kill_point("epoch-end")
            val = evaluate(model, splits.val, len(spec.classes))
            row = {
                "epoch": epoch, "train_loss": stats.train_loss, "val_loss": val.loss,
                "val_accuracy": val.accuracy, "train_seconds": stats.seconds, "val_seconds": val.seconds,
                "epoch_seconds": stats.seconds + val.seconds, "samples_per_s": stats.samples / stats.seconds,
                "steps": stats.steps, "global_step": global_step, "session": session,
            }
            history.append(row)
            step_log.extend({"step": s, "epoch": epoch, "train_loss": v} for s, v in stats.step_log)
            write_csv(run / rd_files.METRICS, rd_files.METRIC_FIELDS, history)
            write_csv(run / rd_files.STEPS, rd_files.STEP_FIELDS, step_log)
            if val.loss < best_val:
                best_val, best_epoch = val.loss, epoch
                save_checkpoint(run / rd_files.BEST, checkpoint_state(epoch))
            save_checkpoint(run / rd_files.LAST, checkpoint_state(epoch))
            kill_point("after-checkpoint")
            log(f"epoch {epoch}/{cfg.epochs}  train loss {stats.train_loss:.4f}  val loss {val.loss:.4f}  "
                f"val acc {val.accuracy:.2%}  {row['epoch_seconds']:.2f} s "
                f"(train {stats.seconds:.2f} s, {row['samples_per_s']:,.0f} samples/s)")
            if cfg.early_stop is not None and epoch - best_epoch >= cfg.early_stop:
                log(f"early stop: no better validation loss for {cfg.early_stop} epochs "
                    f"(best {best_val:.4f} at epoch {best_epoch}; best.pt kept)")
                stopped_early = True
                break
    except DivergenceError as e:
        _set_status(run, "diverged", message=str(e), epochs_done=len(history), best_epoch=best_epoch)
        raise DivergenceError(f"{e}; {run.path}: best.pt from epoch {best_epoch} kept" if best_epoch
                              else f"{e}; {run.path}: no epoch finished, no checkpoint written") from None
    except KeyboardInterrupt:
        _set_status(run, "interrupted", epochs_done=len(history))
        log(f"\ninterrupted after epoch {len(history)}; continue with: mnistlab train --resume {run.path}")
        raise

    kill_point("final-eval")
    test = evaluate(model, splits.test, len(spec.classes))
    write_json(run / rd_files.TEST, {**test.to_dict(), "epoch": len(history), "checkpoint": "last",
                                     "classes": list(spec.classes)})
    log(f"test: loss {test.loss:.4f}  accuracy {test.accuracy:.2%} ({test.correct}/{test.total})  "
        f"in {test.seconds:.2f} s")
    _set_status(run, "finished", epochs_done=len(history), stopped_early=stopped_early, best_epoch=best_epoch)
    return run

"""A training run's epochs: model, steps, validation, checkpoints, start or resume, in an open run folder.

The per-step work lives in `loop.py` and `levers.py`; this module decides when things are saved. The
job (mnistlab.jobs.train) owns the folder: it fetches the data, creates and locks the folder and records
how the run ended; `train` gets the open folder (a core.writer.JobFolder: its path, its writer, its
status) and writes the run's files through it. Order per epoch: train, validate, metrics.csv and
steps.csv (rewritten whole), best.pt (if better), last.pt (with the whole history). Every file is
replaced atomically, so a run killed at any point is readable (eval, plot), and --resume rewinds the
CSVs to last.pt's history before going on, so a CSV row written ahead of its checkpoint is trained
again, identically. TensorBoard's event files (tblog.py) follow the CSVs, and are rewound the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from mnistlab.core import progress as progress_bars
from mnistlab.core import rundir as rd_files
from mnistlab.core import threads
from mnistlab.core.device import describe_choice, device_error_message, enable_deterministic, resolve_device
from mnistlab.core.distributed import World, agree, from_main, init_process_group, lost_peer_line
from mnistlab.core.environment import environment, epoch_load, load_snapshot, precision_environment
from mnistlab.core.errors import ConfigError, DeviceError, DistributedError, DivergenceError, MnistlabError, ModelError
from mnistlab.core.failures import as_model_error, outcome
from mnistlab.core.faults import kill_point
from mnistlab.core.rundir import RunDir
from mnistlab.core.writer import JobFolder
from mnistlab.data.datasets import DatasetSpec, get_dataset
from mnistlab.data.loader import Splits, make_splits
from mnistlab.training.checkpoint import load_model_state, load_optimizer_state, restore_rng, save_checkpoint
from mnistlab.training.config import TrainConfig
from mnistlab.training.evaluation import evaluate
from mnistlab.training.levers import WARMUP_DEVICES, Levers, TrainStep, make_step, prepare_model, warm_up
from mnistlab.training.loop import EpochProgress, make_optimizer, set_fused_for, train_epoch
from mnistlab.training.models import create_model, model_code, model_code_for_run
from mnistlab.training.modelspec import ModelCode, record_in_run
from mnistlab.training.tblog import open_log

Log = Callable[[str], None]
EpochHook = Callable[[dict[str, float]], bool]


def check_same_start(state: dict | None, where: str, w: World) -> None:
    """Every process of a resumed job must start from rank 0's checkpoint: each reads the run directory,
    so a machine that does not share it would train from another point. One line on every rank instead."""
    if not w.distributed:
        return
    within = _progress(state) if state else None
    mine = (int(state["epoch"]), within.steps if within else 0) if state else None
    main = from_main(mine)
    agree(
        None
        if mine == main
        else DistributedError(
            f"rank {w.rank} sees {where} at {mine}, rank 0 at {main} (epochs, steps; None: a new run): under torchrun "
            f"a resumed run's directory must be the same for every machine (a shared filesystem)"
        )
    )


def _progress(state: dict[str, Any]) -> EpochProgress | None:
    """The steps of the epoch under way that a mid-epoch checkpoint holds (None: it ends an epoch)."""
    partial = state.get("partial")
    return None if partial is None else EpochProgress(**partial)


@dataclass
class Prepared:
    device: torch.device
    spec: DatasetSpec
    splits: Splits
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    code: ModelCode  # where the model came from (recorded in the run)
    step: TrainStep  # the training step with the config's speed levers (on the DDP wrapper under torchrun)


def prepare(
    cfg: TrainConfig,
    data: Callable[[], Path],
    log: Log,
    w: World,
    run: RunDir | None = None,
    recorded_threads: int | None = None,
) -> Prepared:
    """Device, the data on it, and a freshly seeded model and optimizer. `data()` is the job's: it fetches and
    verifies the dataset and returns its root, called once the process group is up (under torchrun every
    rank must take part in agreeing on its outcome). Resuming `run`, the model's code is the run's own (a
    file spec: its verified copy), and a --deterministic run keeps its `recorded_threads` (the count its
    epochs so far computed with: another count would round differently)."""
    code = (
        model_code(cfg.model)
        if run is None
        else model_code_for_run(
            run.path, cfg.model, check_original=True, fallback_to_spec=not (run / rd_files.LAST).exists()
        )
    )
    if cfg.deterministic:
        enable_deterministic()  # before any CUDA work: it sets CUBLAS_WORKSPACE_CONFIG
        chosen = threads.pin_for_repeatability(recorded_threads)  # the same count, so the same rounding, always
        if chosen.threads > chosen.cpus:
            log(
                f"--deterministic: {chosen.threads} threads, as this run recorded, on {chosen.cpus} usable CPU"
                f"{'s' * (chosen.cpus != 1)} (slower, and bit-exact)"
            )
    device = resolve_device(cfg.device)
    levers = Levers.of(cfg)
    levers.check(device)  # a lever this device lacks fails before any data work
    if w.distributed and levers.cuda_graphs:
        raise ConfigError(
            "--cuda-graphs cannot run under torchrun (a captured step would not include DDP's "
            "all-reduce); drop one of the two"
        )
    spec = get_dataset(cfg.dataset)
    if w.distributed:
        if cfg.batch_size % w.size:
            raise ConfigError(
                f"--batch-size {cfg.batch_size} is the global batch: it must divide evenly over {w.size} processes"
            )
        if device.type == "cuda":
            device = torch.device("cuda", w.local_rank)
            torch.cuda.set_device(device)
        init_process_group(w, device.type, cfg.dist_timeout)
        log(
            f"data parallel: {w.size} processes, {cfg.batch_size // w.size} samples each per step of "
            f"{cfg.batch_size} ({'NCCL' if device.type == 'cuda' else 'gloo'})"
        )
    root = data()
    try:
        splits = make_splits(
            spec,
            root,
            batch_size=cfg.batch_size,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            device=device,
            subset=cfg.subset,
            shard=(w.rank, w.size),
        )
        torch.manual_seed(cfg.seed)
        model = prepare_model(
            create_model(code, spec.shape), levers, device, sample_shape=spec.shape.sample, name=cfg.model
        )
    except RuntimeError as e:
        message = device_error_message(e, device)
        if message is None:
            raise
        raise DeviceError(message) from None
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum)
    # under torchrun the wrapper averages gradients over the processes; checkpoints keep the plain model
    train_model = (
        model
        if not w.distributed
        else DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    )
    step = make_step(
        train_model,
        optimizer,
        levers,
        device,
        batch_size=cfg.batch_size // w.size,
        sample_shape=tuple(splits.train.x.shape[1:]),
    )
    return Prepared(device, spec, splits, model, optimizer, code, step)


def _one_line(
    job: JobFolder,
    e: BaseException,
    cfg: TrainConfig,
    device: torch.device,
    stage: str,
    saved: int,
    best_epoch: int,
    log: Log,
) -> BaseException | None:
    """The one-line error to raise instead of `e` (None: raise `e` itself: a signal, or a bug that keeps
    its traceback); the job records the state (core.failures) with the run's fields set here."""
    batch = cfg.batch_size if stage in ("warm-up", "training") else None  # the one the user can change
    model_error = as_model_error(e, cfg.model, f"during {stage}")
    end = outcome(model_error or e, device=device, batch_size=batch)
    line = end.line
    if isinstance(e, DivergenceError):
        line = (
            f"{e}; {job.path}: best.pt from epoch {best_epoch} kept"
            if best_epoch
            else f"{e}; {job.path}: no epoch finished, no checkpoint written"
        )
    elif end.state == "failed" and line is not None and not isinstance(e, MnistlabError):
        kept = (
            f"checkpoints kept (mnistlab train --resume {job.path} continues from last.pt)"
            if (job / rd_files.LAST).exists()
            else "no epoch finished, no checkpoint written"
        )
        during = "" if model_error is not None else f" (during {stage})"  # a model's line names the stage itself
        line = f"{line}{during}; {job.path}: {kept}"
    job.fields["epochs_done"] = saved
    if end.state in ("failed", "diverged"):
        job.fields["best_epoch"] = best_epoch
    if isinstance(e, KeyboardInterrupt):
        log(
            f"\n{end.state} after epoch {saved} (last.pt holds epoch {saved}); continue with: "
            f"mnistlab train --resume {job.path}"
            if saved
            else f"\n{end.state} before the first checkpoint; start it again with: mnistlab train --resume {job.path}"
        )
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


def train(
    job: JobFolder,
    cfg: TrainConfig,
    state: dict | None,
    prep: Prepared,
    *,
    log: Log,
    progress: bool,
    on_epoch: EpochHook | None,
    w: World,
    tensorboard: bool,
) -> None:
    """Train `cfg`'s epochs into the open run folder `job`, from `state` (a checkpoint; None: a new run).
    `on_epoch(row)` sees each epoch's metrics once they are saved; if it returns True the run stops there
    and ends `pruned` (a sweep's pruner). `tensorboard`: write TensorBoard event files (see tblog.py).
    Under torchrun each process trains on its shard of every batch; rank 0's job alone writes."""
    run, writer = RunDir(job.path), job.writer
    device, spec, splits, model, optimizer = prep.device, prep.spec, prep.splits, prep.model, prep.optimizer
    done = int(state["epoch"]) if state else 0
    partial = _progress(state) if state else None  # a resume from a mid-epoch checkpoint
    # the epoch's bar where it redraws in place (a terminal, a notebook's widget); elsewhere epoch lines
    progress = progress and progress_bars.shown(tqdm)
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
        log(
            f"resuming {run.path} after epoch {done} of {cfg.epochs}"
            + (f" and {partial.steps} steps of epoch {done + 1}" if partial else "")
        )
    writer.json(run / rd_files.CONFIG, cfg.to_dict())
    record_in_run(run.path, prep.code, writer)  # a file spec: its copy and SHA-256
    # load: was the machine busy?
    env = {**environment(), **precision_environment(device), "device": str(device), "load_start": load_snapshot()}
    writer.json(run / rd_files.ENV, env)
    writer.csv(run / rd_files.METRICS, rd_files.METRIC_FIELDS, history)
    writer.csv(run / rd_files.STEPS, rd_files.STEP_FIELDS, step_log)
    # rewound to the checkpoint, as the CSVs
    tb = open_log(run.path, history, step_log, enabled=tensorboard and writer.writes, log=log)
    job.progress(epochs_done=done)
    log(describe_choice(cfg.device, device))
    log(
        f"{cfg.model} on {cfg.dataset}: {splits.train.num_samples} train / {splits.val.num_samples} val / "
        f"{splits.test.num_samples} test samples, batch {cfg.batch_size}, SGD lr {cfg.lr} momentum {cfg.momentum}, "
        f"{prep.step.levers.describe()}"
    )

    def checkpoint_state(epoch: int, within: EpochProgress | None = None) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "global_step": int(history[-1]["global_step"]) if history else 0,
            "config": cfg.to_dict(),
            "history": history,
            "step_log": step_log,
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "rng_cpu": torch.get_rng_state(),
            **prep.step.state_dict(),
            **({"partial": vars(within)} if within else {}),
        }

    def save_within(within: EpochProgress) -> None:
        """A mid-epoch last.pt (--checkpoint-every); best.pt and the CSVs wait for the epoch's end."""
        with job.deferred():
            save_checkpoint(run / rd_files.LAST, checkpoint_state(saved, within), writer)
            job.progress(epochs_done=saved, steps_done=within.steps)
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
            warmup_s = warm_up(
                prep.step,
                splits.train.x[:n].clone(),
                splits.train.y[:n].clone(),
                evaluation=splits.val.x[: splits.val.batch_size] if splits.val.num_samples else None,
            )
            env["warmup_seconds"] = warmup_s
            writer.json(run / rd_files.ENV, env)
            job.progress(warmup_seconds=warmup_s)
            log(
                f"warm-up on {device.type}: {warmup_s:.2f} s (untimed steps, compile and capture included, then "
                f"undone; not counted in epoch {done + 1})"
            )
        for epoch in range(done + 1, cfg.epochs + 1):
            stage = "training"
            chosen = threads.refresh()  # the load may have changed since the last epoch
            steps = len(splits.train) if cfg.max_steps is None else min(cfg.max_steps, len(splits.train))
            with tqdm(
                total=min(steps * cfg.batch_size, splits.train.num_samples),
                unit="sample",
                unit_scale=True,
                desc=f"epoch {epoch}/{cfg.epochs}",
                leave=False,
                disable=not progress,
            ) as bar:
                stats = train_epoch(
                    model,
                    optimizer,
                    splits.train,
                    epoch=epoch,
                    global_step=global_step,
                    log_every=cfg.log_every,
                    max_steps=cfg.max_steps,
                    progress=bar,
                    distributed=w.distributed,
                    step=prep.step,
                    resume_from=partial,
                    checkpoint_every=cfg.checkpoint_every,
                    on_checkpoint=save_within,
                )
            partial = None
            global_step += stats.steps
            kill_point("epoch-end")
            stage = "validation"
            val = evaluate(model, splits.val, len(spec.classes), distributed=w.distributed)
            if not math.isfinite(val.loss):  # the weights are unusable even though each step's loss was finite
                raise DivergenceError(
                    f"training diverged: the validation loss became {val.loss} at epoch {epoch}; lower --lr"
                )
            row = {
                "epoch": epoch,
                "train_loss": stats.train_loss,
                "val_loss": val.loss,
                "val_accuracy": val.accuracy,
                "train_seconds": stats.seconds,
                "val_seconds": val.seconds,
                "epoch_seconds": stats.seconds + val.seconds,
                "samples_per_s": stats.samples * w.size / stats.seconds,
                "steps": stats.steps,
                "global_step": global_step,
                "session": session,
                **epoch_load(),  # was the machine busy during this epoch?
                "threads": chosen.threads,
                **({"warmup_s": warmup_s} if warmup_s is not None and epoch == done + 1 else {}),
            }
            with job.deferred():  # a stop request waits until the epoch is saved and counted
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
                job.fields.pop("steps_done", None)
                job.progress(epochs_done=saved)
            kill_point("after-checkpoint")
            log(
                f"epoch {epoch}/{cfg.epochs}  train loss {stats.train_loss:.4f}  val loss {val.loss:.4f}  "
                f"val acc {val.accuracy:.2%}  {row['epoch_seconds']:.2f} s "
                f"(train {stats.seconds:.2f} s, {row['samples_per_s']:,.0f} samples/s)"
            )
            if cfg.early_stop is not None and epoch - best_epoch >= cfg.early_stop:
                log(
                    f"early stop: no better validation loss for {cfg.early_stop} epochs "
                    f"(best {best_val:.4f} at epoch {best_epoch}; best.pt kept)"
                )
                stopped_early = True
                break
            if on_epoch is not None and on_epoch(row):
                tb.close()
                job.fields.update(epochs_done=len(history), best_epoch=best_epoch)
                job.ends_as = "pruned"
                log(f"pruned after epoch {epoch}: the sweep's pruner stopped it (no test evaluation)")
                return
        writer.json(run / rd_files.ENV, {**env, "load_end": load_snapshot()})
        kill_point("final-eval")
        stage = "the final test evaluation"
        test = evaluate(model, splits.test, len(spec.classes), distributed=w.distributed)
        stage = "writing the results"
        writer.json(
            run / rd_files.TEST,
            {**test.to_dict(), "epoch": len(history), "checkpoint": "last", "classes": list(spec.classes)},
        )
        tb.finish(cfg.to_dict(), test.to_dict(), global_step)
        log(
            f"test: loss {test.loss:.4f}  accuracy {test.accuracy:.2%} ({test.correct}/{test.total})  "
            f"in {test.seconds:.2f} s"
        )
        job.fields.update(epochs_done=len(history), stopped_early=stopped_early, best_epoch=best_epoch)
    except BaseException as e:  # the job records the final state: no run is left "running"
        tb.close()
        with job.deferred():  # a second signal does not cut the one line of the first short
            instead = _one_line(job, e, cfg, device, stage, saved, best_epoch, log)
        if instead is None:
            raise
        raise instead from None

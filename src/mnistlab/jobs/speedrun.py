"""`mnistlab speedrun` as a job: time to a target test accuracy over N seeds, into one folder.

Every finished seed is written at once (speedrun.json), so a stop loses only the seed that is running."""

from __future__ import annotations

import dataclasses
from typing import Any

from mnistlab.core.defaults import RUNS_DIR
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RunDir
from mnistlab.jobs.folder import Log, PathLike, dataset, job_folder

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["speedrun"]


def speedrun(
    *,
    device: str = "auto",
    seeds: int,
    target: float,
    levers: dict[str, Any] | None = None,
    dataset_name: str = "mnist",
    data_dir: str | None = None,
    out: PathLike | None = None,
    under: PathLike = RUNS_DIR,
    subset: int | None = None,
    log: Log = _LOG,
    cold_since: tuple[float, str] | None = None,
) -> tuple[Any, RunDir]:
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
    with job_folder(out, under, "speedrun", "speedrun") as job:
        log(describe_choice(device, dev))
        kept: list[int] = []

        def keep(so_far: Any) -> None:  # every finished seed is on disk: a stop loses only the one running
            with job.deferred():  # a signal waits until the file and the count agree
                job.save(so_far)
                kept.append(len(so_far.seeds))
                job.progress(seeds_done=len(so_far.seeds))

        try:
            result = run_speedrun(
                train,
                test,
                spec,
                dev,
                seeds=seeds,
                target=target,
                levers=chosen,
                log=log,
                on_seed=keep,
                cold_since=cold_since,
            )
        except KeyboardInterrupt:
            log(
                f"stopped after {kept[-1]} of {seeds} seeds; {job / 'speedrun.json'} holds them"
                if kept
                else f"stopped before the first seed finished; {job.path} holds no result"
            )
            raise
    return result, RunDir(job.path)

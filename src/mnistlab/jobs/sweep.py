"""`mnistlab sweep`: a hyper-parameter study on Optuna, each trial an ordinary run directory.

The study lives in an Optuna RDB storage (default: SQLite in the sweep directory; any SQLAlchemy URL
works, so machines can share one study through a database server). The same command started again
continues the study until N trials have completed or been pruned.

Liveness is Optuna's storage heartbeat: a worker records one for its running trial every
`heartbeat` seconds; a RUNNING trial without one for `grace` seconds has lost its worker, and any
worker (before each trial and after each epoch) marks it failed and queues it again with the same
parameters (at most MAX_RETRY times; then new trials replace it). Nothing depends on which folder or
machine a worker runs from. The study's user attributes pin what it compares (model code, dataset,
parameter space, fixed options): a worker that disagrees is refused before it trains. Each worker's
folder keeps sweep.json and a snapshot of the study's trials (trials.json, rewritten after each
trial), which `mnistlab report` reads: reporting never opens the storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.defaults import GRACE_S, HEARTBEAT_S, MAX_WAIT_S
from mnistlab.core.errors import ConfigError, DivergenceError, MnistlabError
from mnistlab.core.extras import missing, require
from mnistlab.core.lock import FolderLock
from mnistlab.core.rundir import RunDir
from mnistlab.core.writer import JobFolder
from mnistlab.jobs.folder import job_folder, quiet
from mnistlab.measure.sweeps import NAME, OBJECTIVES, SWEEP_FILE, TRIALS_FILE, read_record
from mnistlab.training.config import TrainConfig

__all__ = ["ParamSpec", "SweepPlan", "parse_params", "run_sweep"]

STUDY_DB = "study.db"
# settings a sweep may vary; the rest (data, device, paths) belong to the sweep as a whole
NOT_SWEPT = {"dataset", "device", "data_dir", "subset", "deterministic", "log_every"}
MACHINE_LOCAL = {"device", "data_dir"}  # may differ between the machines of one study
IDENTITY_ATTR = "mnistlab"  # the study's user attribute that pins what it compares
MAX_RETRY = 2  # a trial whose worker died is run again at most this often, then replaced by new ones
OPEN_TRIES = 5  # opening a storage that another worker is creating right now


@dataclass(frozen=True)
class ParamSpec:
    """One `--param`: `name=low:high[:log]` (a range) or `name=a,b,c` (choices)."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    integer: bool = False

    @classmethod
    def parse(cls, text: str) -> ParamSpec:
        name, sep, values = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise ConfigError(f"--param {text!r}: expected NAME=LOW:HIGH[:log] or NAME=A,B,C")
        kinds = {f.name: str(f.type).split(" | ")[0] for f in dataclasses.fields(TrainConfig)}
        sweepable = sorted(n for n, k in kinds.items() if n not in NOT_SWEPT and k in ("int", "float", "str"))
        if name not in sweepable:
            raise ConfigError(f"--param {text!r}: unknown parameter {name!r}; one of: {', '.join(sweepable)}")
        kind = kinds[name]
        convert = {"int": int, "float": float, "str": str}[kind]
        try:
            if ":" in values and kind != "str":
                parts = values.split(":")
                if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                    raise ValueError("a range is LOW:HIGH or LOW:HIGH:log")
                low, high = convert(parts[0]), convert(parts[1])
                if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
                    raise ConfigError(f"--param {text!r}: empty range (LOW must be below HIGH)")
                log = len(parts) == 3
                if log and low <= 0:
                    raise ConfigError(f"--param {text!r}: a log range needs LOW > 0")
                spec = cls(name, low=low, high=high, log=log, integer=kind == "int")
            else:
                choices = tuple(dict.fromkeys(convert(v.strip()) for v in values.split(",")))
                if any(v in ("", None) for v in choices):
                    raise ValueError("an empty choice")
                spec = cls(name, choices=choices)
        except ValueError as e:
            raise ConfigError(f"--param {text!r}: cannot read the values as {kind} ({e})") from None
        for v in spec.examples():  # every value must make a valid config: fail now, not in trial 7
            try:
                TrainConfig(**{name: v})
            except ConfigError as e:
                raise ConfigError(f"--param {text!r}: {e}") from None
        return spec

    def examples(self) -> list[Any]:
        return list(self.choices) if self.choices else [self.low, self.high]

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"choices": list(self.choices)}


def parse_params(texts: list[str]) -> tuple[ParamSpec, ...]:
    """Every `--param`, each name once (a second range or choice list for one name is ambiguous)."""
    specs = tuple(ParamSpec.parse(t) for t in texts)
    names = [p.name for p in specs]
    for name in dict.fromkeys(n for n in names if names.count(n) > 1):
        raise ConfigError(f"--param {name} is given {names.count(name)} times; give each parameter once")
    return specs


@dataclass(frozen=True)
class SweepPlan:
    study: str
    trials: int  # completed or pruned trials the study must reach
    params: tuple[ParamSpec, ...]
    base: TrainConfig
    direction: str = "minimize"
    pruner: str = "none"
    storage: str | None = None  # None: SQLite in the sweep directory
    heartbeat: int = HEARTBEAT_S  # seconds between a running trial's heartbeats
    grace: int = GRACE_S  # seconds without one after which the trial's worker counts as dead

    @property
    def objective(self) -> str:
        return OBJECTIVES[self.direction]

    def record(self) -> dict[str, Any]:
        """What must match when the same sweep folder is used again (the storage's password masked)."""
        return {"study": self.study, "params": [p.to_dict() for p in self.params], "base": self.base.to_dict(),
                "direction": self.direction, "objective": self.objective, "pruner": self.pruner,
                "storage": masked(self.storage) if self.storage else None}

    def check(self) -> None:
        if not NAME.fullmatch(self.study):
            raise ConfigError(f"--study {self.study!r}: use letters, digits, '.', '_' and '-' "
                              f"(a folder is named after it)")
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if not self.params:
            raise ConfigError("a sweep needs at least one --param")
        if self.grace > MAX_WAIT_S:
            raise ConfigError(f"--grace-period must be at most {MAX_WAIT_S} s (a week), got {self.grace}")
        if not 0 < self.heartbeat < self.grace:
            raise ConfigError(f"--grace-period ({self.grace} s) must be longer than --heartbeat-interval "
                              f"({self.heartbeat} s), which must be positive")


def study_identity(plan: SweepPlan) -> dict[str, Any]:
    """What the study compares, pinned in its user attributes: every worker must agree on it."""
    from mnistlab.data.datasets import get_dataset

    swept = {p.name for p in plan.params}
    fixed = {k: v for k, v in plan.base.to_dict().items() if k not in swept | MACHINE_LOCAL}
    data = get_dataset(plan.base.dataset)
    files = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    return {"params": [p.to_dict() for p in plan.params], "fixed": fixed, "model_sha256": _model_hashes(plan),
            "dataset_sha256": {f.name: f.sha256 for f in files},
            "direction": plan.direction, "objective": plan.objective, "pruner": plan.pruner}


def _model_hashes(plan: SweepPlan) -> dict[str, str | None]:
    """Each model spec the sweep may train, with its file's SHA-256 (None: a built-in or a module)."""
    from mnistlab.training.models import model_code

    model_param = next((p for p in plan.params if p.name == "model"), None)
    specs = model_param.choices if model_param else (plan.base.model,)
    return {spec: model_code(spec).sha256 for spec in specs}


def _difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first setting where two identities differ, in words."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in dict.fromkeys([*old, *new]):
            found = _difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if old == new else f"{where}: {_short(old)} in the study, {_short(new)} here"


def _short(v: Any) -> str:
    text = repr(v)
    return text[:60] + "..." if len(text) > 63 else text


_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*:)(?P<password>[^@/\s]*)@")


def masked(text: str, url: str | None = None) -> str:
    """`text` with the password of a storage URL shown as *** (`user:***@host`): a URL is printed in lines
    and stored in sweep.json and reports, which people share. With `url`, its password is masked wherever it
    appears in `text` (a driver's error line may quote it)."""
    m = _PASSWORD.search(url or "")
    if m and m.group("password"):
        text = text.replace(m.group("password"), "***")
    return _PASSWORD.sub(lambda g: f"{g.group('head')}***@" if g.group("password") else g.group(0), text)


def default_sweep_dir(study: str, runs_base: str | Path) -> Path:
    return Path(runs_base) / f"sweep-{study}"


def _storage(plan: SweepPlan, sweep_dir: Path) -> str:
    return plan.storage or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """The heartbeat API is marked experimental in Optuna: its warnings are not for our users."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _open_study(plan: SweepPlan, url: str, log: Callable[[str], None]):
    import optuna

    # errors only: a trial that failed is reported on our own line, not with Optuna's traceback (run_sweep
    # restores the level it found)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if plan.pruner == "median" else optuna.pruners.NopPruner()

    def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with _quiet_optuna():
            retry(study, trial)
        log(f"trial {trial.number}: no heartbeat from its worker ({trial.user_attrs.get('worker', '?')}) for "
            f"{plan.grace} s; marked failed, and queued again unless it was retried {MAX_RETRY} times")

    # a generous SQLite timeout: two workers on one file wait for each other instead of failing
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            with _quiet_optuna():
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=plan.heartbeat,
                                                     grace_period=plan.grace, heartbeat_stale_trial_callback=stale)
            return optuna.create_study(study_name=plan.study, storage=storage, load_if_exists=True,
                                       direction=plan.direction, pruner=pruner)
        except Exception as e:  # sqlalchemy, a missing driver, a bad URL: the storage cannot be used
            if attempt < OPEN_TRIES and _lost_creation_race(e):
                time.sleep(0.5 * attempt)
                continue
            driver = _missing_driver(e)
            if driver == "psycopg":
                raise missing("psycopg", "mnistlab sweep --storage postgresql+psycopg://...", "postgres") from None
            if driver == "psycopg2":  # postgresql+psycopg2:// (or, before SQLAlchemy 2.1, postgresql://)
                raise ConfigError("--storage names the psycopg2 driver, which is not installed: write "
                                  "postgresql+psycopg://... and pip install 'mnistlab[postgres]'") from None
            raise ConfigError(masked(f"--storage {url}: cannot open the study ({_first_line(e)})", url)) from None
    raise AssertionError("unreachable")


def _missing_driver(e: BaseException) -> str | None:
    """The database driver whose absence made opening the storage fail (Optuna wraps SQLAlchemy's
    ModuleNotFoundError in an ImportError of its own), or None."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ImportError) and cause.name in ("psycopg", "psycopg2"):
            return cause.name
        cause = cause.__cause__ or cause.__context__
    return None


def _lost_creation_race(e: Exception) -> bool:
    """Workers on other machines create the storage's tables at the same moment (PostgreSQL: a unique
    violation in its catalog, or 'already exists'); a moment later the tables are there to be used."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(e, (IntegrityError, ProgrammingError))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _pin_identity(study: Any, plan: SweepPlan, url: str) -> None:
    """Record what the study compares, or refuse a worker that disagrees with what it recorded."""
    mine = study_identity(plan)
    theirs = study.user_attrs.get(IDENTITY_ATTR)
    if theirs is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"study {plan.study} in {masked(url)}: has trials but no mnistlab settings "
                              f"(not started by mnistlab sweep); use another --study")
        study.set_user_attr(IDENTITY_ATTR, mine)
        theirs = study.user_attrs.get(IDENTITY_ATTR)  # re-read: a worker that started with us may have won
    diff = _difference(theirs, mine)
    if diff:
        raise ConfigError(f"study {plan.study} in {masked(url)} was started with other settings ({diff}); "
                          f"use the study's settings, or another --study")


def _counted(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _check_folder(plan: SweepPlan, sweep_dir: Path) -> None:
    """A sweep folder serves one sweep: the same settings and storage, whatever the trial count."""
    if (sweep_dir / SWEEP_FILE).exists():
        old = read_record(sweep_dir)
        if {k: old.get(k) for k in plan.record()} != plan.record():
            raise ConfigError(f"{sweep_dir}: holds a sweep started with other settings or storage (see its "
                              f"{SWEEP_FILE}); use the same --param, --storage and train options, or another "
                              f"--study / --out")


def run_sweep(plan: SweepPlan, *, out: str | Path | None = None, runs_base: str | Path = "runs",
              log: Callable[[str], None] = print) -> Path:
    """Run (or continue) the study until `plan.trials` trials have completed or been pruned. The sweep folder
    records its own status (status.json) besides sweep.json and trials.json; each trial is a train job."""
    require("optuna", "mnistlab sweep", "sweep")  # an extra: one line naming the pip command when it is missing
    import optuna

    plan.check()
    sweep_dir = (Path(out) if out else default_sweep_dir(plan.study, runs_base)).absolute()
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{sweep_dir}: cannot create the sweep directory ({e.strerror})") from None
    verbosity = optuna.logging.get_verbosity()  # Optuna's log level is global: left as it was found
    try:
        with job_folder(sweep_dir, job="sweep", existing=True, claim=lambda p: _check_folder(plan, p)) as job:
            job.fields["trials"] = plan.trials
            _run(plan, job, log)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return sweep_dir


def _run(plan: SweepPlan, job: JobFolder, log: Callable[[str], None]) -> None:
    import optuna

    url = _storage(plan, job.path)
    # workers started together would race to create the storage's tables: one at a time on this machine
    with FolderLock(job.path, what="sweep", wait=True, name=".study.lock"):
        study = _open_study(plan, url, log)
    _pin_identity(study, plan, url)
    job.writer.json(job / SWEEP_FILE, {**plan.record(), "trials": plan.trials, "url": masked(url),
                                       "heartbeat": plan.heartbeat, "grace": plan.grace})
    _snapshot(study, job)
    log(f"sweep {plan.study}: {plan.direction} {plan.objective} over {len(plan.params)} parameter(s); "
        f"{_counted(study)} of {plan.trials} trials done; storage {masked(url)}")
    objective = _objective(plan, study, job.path, log)
    attempts, limit = 0, 3 * plan.trials  # failures (diverged trials) do not count; bound the retries
    while _counted(study) < plan.trials and attempts < limit:
        attempts += 1
        try:  # optimize, one trial at a time: it fails stale trials first and beats the heartbeat meanwhile
            with _quiet_optuna():
                study.optimize(objective, n_trials=1, catch=(DivergenceError,))
        finally:
            _snapshot(study, job)
            job.progress(trials_done=_counted(study))
    with _quiet_optuna():
        optuna.storages.fail_stale_trials(study)
    _snapshot(study, job)
    if _counted(study) < plan.trials:
        raise MnistlabError(f"sweep {plan.study}: only {_counted(study)} of {plan.trials} trials finished after "
                            f"{attempts} attempts (the others failed: see `mnistlab report {job.path}`)")


def _objective(plan: SweepPlan, study: Any, sweep_dir: Path, log: Callable[[str], None]
               ) -> Callable[[Any], float]:
    import optuna

    started_in = os.getcwd()

    def objective(trial: optuna.Trial) -> float:
        # a trial's model may change the working directory; the next one starts where the command did, so that
        # a relative model spec names the same file for every trial (the sweep's own paths are absolute)
        with contextlib.suppress(OSError):
            os.chdir(started_in)
        run_dir = sweep_dir / f"trial-{trial.number:04d}"
        # a retried trial inherits its predecessor's attributes: replace them before anything else
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("result", _result([]))
        values = {p.name: p.suggest(trial) for p in plan.params}
        cfg = plan.base.replace(**values)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        log(f"trial {trial.number}: {shown}")
        seen: list[dict[str, float]] = []

        def report(row: dict[str, float]) -> bool:
            seen.append(row)
            trial.set_user_attr("result", _result(seen))
            trial.report(row[plan.objective], int(row["epoch"]))
            with _quiet_optuna():  # a dead worker's trial is failed within the grace period, not after ours
                optuna.storages.fail_stale_trials(study)
            return trial.should_prune()

        try:
            run = _train_trial(cfg, run_dir, report)
        except DivergenceError as e:
            log(f"trial {trial.number}: {e}")
            raise
        rows = run.metrics()
        trial.set_user_attr("result", _result(rows))
        if run.status().get("state") == "pruned":
            log(f"trial {trial.number}: pruned after epoch {len(rows)}")
            raise optuna.TrialPruned()
        values_seen = [r[plan.objective] for r in rows]
        best = min(values_seen) if plan.direction == "minimize" else max(values_seen)
        log(f"trial {trial.number}: best {plan.objective} {best:.4f} in {len(rows)} epochs")
        return best

    return objective


def _result(rows: list[dict[str, float]]) -> dict[str, Any]:
    """A trial's progress as its epochs' metrics give it, kept in the study for every worker's report."""
    return {"best_val_loss": min((r["val_loss"] for r in rows), default=None),
            "best_val_accuracy": max((r["val_accuracy"] for r in rows), default=None),
            "epochs": len(rows), "seconds": sum(r["epoch_seconds"] for r in rows)}


def _train_trial(cfg: TrainConfig, run_dir: Path, report: Callable[[dict[str, float]], bool]) -> RunDir:
    from mnistlab.jobs.train import train_run

    # a run directory left by an earlier, killed worker for this trial number cannot exist: Optuna never
    # reuses a number; a leftover from a crash before the first write is handled by jobs.folder.new_folder
    return train_run(cfg, run_dir=run_dir, log=quiet, progress=False, on_epoch=report)


def _snapshot(study: Any, job: JobFolder) -> None:
    """The study's trials as this worker sees them now, so that the folder can be reported anywhere."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        result = t.user_attrs.get("result") or _result([])
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": dict(t.params),
                     "value": t.value if t.values else None, "run_dir": t.user_attrs.get("run_dir"),
                     "worker": t.user_attrs.get("worker"), "retry_of": t.system_attrs.get("failed_trial"),
                     **result})
    job.writer.json(job / TRIALS_FILE, rows)

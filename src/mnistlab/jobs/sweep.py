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
import functools
import math
import os
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from mnistlab.core import progress
from mnistlab.core.defaults import GRACE_S, HEARTBEAT_S, MAX_WAIT_S
from mnistlab.core.errors import ConfigError, DivergenceError, MnistlabError
from mnistlab.core.extras import missing, require
from mnistlab.core.lock import FolderLock
from mnistlab.core.logs import lines
from mnistlab.core.rundir import RunDir, only_leftovers
from mnistlab.core.schema import short_repr
from mnistlab.core.writer import JobFolder
from mnistlab.jobs.folder import job_folder, quiet
from mnistlab.measure.sweeps import NAME, OBJECTIVES, SWEEP_FILE, TRIALS_FILE, read_record
from mnistlab.training.config import TrainConfig

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["ParamSpec", "SweepPlan", "parse_params", "run_sweep"]

STUDY_DB = "study.db"
# settings a sweep may vary; the rest (data, device, paths) belong to the sweep as a whole
NOT_SWEPT = {"dataset", "device", "data_dir", "subset", "deterministic", "log_every"}
MACHINE_LOCAL = {"device", "data_dir"}  # may differ between the machines of one study
IDENTITY_ATTR = "mnistlab"  # the study's user attribute that pins what it compares
TOKEN_ATTR = "mnistlab_token"  # drawn when the study is first pinned: a later study of the same name has another
STUDY_LOCK = ".study.lock"
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
        low, high = cast(float, self.low), cast(float, self.high)  # a range: parse() sets both
        if self.integer:
            return trial.suggest_int(self.name, int(low), int(high), log=self.log)
        return trial.suggest_float(self.name, float(low), float(high), log=self.log)

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
        return {
            "study": self.study,
            "params": [p.to_dict() for p in self.params],
            "base": self.base.to_dict(),
            "direction": self.direction,
            "objective": self.objective,
            "pruner": self.pruner,
            "storage": masked(self.storage) if self.storage else None,
        }

    def check(self) -> None:
        if not NAME.fullmatch(self.study):
            raise ConfigError(
                f"--study {self.study!r}: use letters, digits, '.', '_' and '-' (a folder is named after it)"
            )
        if self.trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {self.trials}")
        if not self.params:
            raise ConfigError("a sweep needs at least one --param")
        if self.grace > MAX_WAIT_S:
            raise ConfigError(f"--grace-period must be at most {MAX_WAIT_S} s (a week), got {self.grace}")
        if not 0 < self.heartbeat < self.grace:
            raise ConfigError(
                f"--grace-period ({self.grace} s) must be longer than --heartbeat-interval "
                f"({self.heartbeat} s), which must be positive"
            )


def study_identity(plan: SweepPlan) -> dict[str, Any]:
    """What the study compares, pinned in its user attributes: every worker must agree on it."""
    from mnistlab.data.datasets import get_dataset

    swept = {p.name for p in plan.params}
    fixed = {k: v for k, v in plan.base.to_dict().items() if k not in swept | MACHINE_LOCAL}
    data = get_dataset(plan.base.dataset)
    files = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    return {
        "params": [p.to_dict() for p in plan.params],
        "fixed": fixed,
        "model_sha256": _model_hashes(plan),
        "dataset_sha256": {f.name: f.sha256 for f in files},
        "direction": plan.direction,
        "objective": plan.objective,
        "pruner": plan.pruner,
    }


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
    return None if old == new else f"{where}: {short_repr(old)} in the study, {short_repr(new)} here"


_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*:)(?P<password>[^@/\s]*)@")


def masked(text: str, url: str | None = None) -> str:
    """`text` with the password of a storage URL shown as *** (`user:***@host`): a URL is printed in lines
    and stored in sweep.json and reports, which people share. With `url`, its password is masked wherever it
    appears in `text` (a driver's error line may quote it)."""
    m = _PASSWORD.search(url or "")
    if m and m.group("password"):
        text = text.replace(m.group("password"), "***")
    return _PASSWORD.sub(lambda g: f"{g.group('head')}***@" if g.group("password") else g.group(0), text)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """The heartbeat API is marked experimental in Optuna: its warnings are not for our users."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _open_study(plan: SweepPlan, url: str, log: Callable[[str], None]) -> Any:  # an optuna.Study
    import optuna

    # errors only: a trial that failed is reported on our own line, not with Optuna's traceback (run_sweep
    # restores the level it found)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if plan.pruner == "median" else optuna.pruners.NopPruner()

    def stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with _quiet_optuna():
            retry(study, trial)
        log(
            f"trial {trial.number}: no heartbeat from its worker ({trial.user_attrs.get('worker', '?')}) for "
            f"{plan.grace} s; marked failed, and queued again unless it was retried {MAX_RETRY} times"
        )

    # a generous SQLite timeout: two workers on one file wait for each other instead of failing
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    for attempt in range(1, OPEN_TRIES + 1):
        try:
            with _quiet_optuna():
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
                storage = _beating_storage()(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=plan.heartbeat,
                    grace_period=plan.grace,
                    heartbeat_stale_trial_callback=stale,
                )
            return optuna.create_study(
                study_name=plan.study,
                storage=storage,
                load_if_exists=True,
                direction=cast(Literal["minimize", "maximize"], plan.direction),
                pruner=pruner,
            )
        except Exception as e:  # sqlalchemy, a missing driver, a bad URL: the storage cannot be used
            if attempt < OPEN_TRIES and _lost_creation_race(e):
                time.sleep(0.5 * attempt)
                continue
            driver = _missing_driver(e)
            if driver == "psycopg":
                raise missing("psycopg", "mnistlab sweep --storage postgresql+psycopg://...", "postgres") from None
            if driver == "psycopg2":  # postgresql+psycopg2:// (or, before SQLAlchemy 2.1, postgresql://)
                raise ConfigError(
                    "--storage names the psycopg2 driver, which is not installed: write "
                    "postgresql+psycopg://... and pip install 'mnistlab[postgres]'"
                ) from None
            raise ConfigError(masked(f"--storage {url}: cannot open the study ({_first_line(e)})", url)) from None
    raise AssertionError("unreachable")


def _beating_storage() -> type:
    """Optuna's RDBStorage, whose heartbeat survives a database that is down for a while: Optuna's heartbeat
    thread dies at the first failed write (with a traceback on stderr) and the trial then runs on without one,
    so that other workers fail it; here a failed beat is skipped and the next one tries again."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    class BeatingStorage(optuna.storages.RDBStorage):
        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except (optuna.exceptions.StorageInternalError, SQLAlchemyError):
                pass  # the database is unreachable now: the next beat tries again

    return BeatingStorage


def _in_chain(e: BaseException, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in `e`'s chain of causes and contexts (e first) that is `wanted`, or None."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if wanted(cause):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _missing_driver(e: BaseException) -> str | None:
    """The database driver whose absence made opening the storage fail (Optuna wraps SQLAlchemy's
    ModuleNotFoundError in an ImportError of its own), or None."""
    cause = _in_chain(e, lambda c: isinstance(c, ImportError) and c.name in ("psycopg", "psycopg2"))
    return cast(ImportError, cause).name if cause else None


def _lost_creation_race(e: Exception) -> bool:
    """Workers on other machines create the storage's tables at the same moment (PostgreSQL: a unique
    violation in its catalog, or 'already exists'); a moment later the tables are there to be used."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    return isinstance(e, (IntegrityError, ProgrammingError))


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _pin_identity(study: Any, plan: SweepPlan, url: str) -> str:
    """Record what the study compares, or refuse a worker that disagrees with what it recorded; the study's
    token (drawn once, when the first worker pins it), which tells this study from a later one of its name."""
    mine = study_identity(plan)
    theirs = study.user_attrs.get(IDENTITY_ATTR)
    if theirs is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(
                f"study {plan.study} in {masked(url)}: has trials but no mnistlab settings "
                f"(not started by mnistlab sweep); use another --study"
            )
        study.set_user_attr(IDENTITY_ATTR, mine)
        theirs = study.user_attrs.get(IDENTITY_ATTR)  # re-read: a worker that started with us may have won
    diff = _difference(theirs, mine)
    if diff:
        raise ConfigError(
            f"study {plan.study} in {masked(url)} was started with other settings ({diff}); "
            f"use the study's settings, or another --study"
        )
    token = study.user_attrs.get(TOKEN_ATTR)
    if token is None:  # drawn once, by the worker that pins the study (or one pinned before tokens existed)
        study.set_user_attr(TOKEN_ATTR, secrets.token_hex(8))
        token = study.user_attrs.get(TOKEN_ATTR)
    return str(token)


def _counted(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _check_folder(plan: SweepPlan, sweep_dir: Path) -> None:
    """A sweep folder serves one sweep: the same settings and storage, whatever the trial count."""
    if (sweep_dir / SWEEP_FILE).exists():
        old = read_record(sweep_dir)
        if {k: old.get(k) for k in plan.record()} != plan.record():
            raise ConfigError(
                f"{sweep_dir}: holds a sweep started with other settings or storage (see its "
                f"{SWEEP_FILE}); use the same --param, --storage and train options, or another "
                f"--study / --out"
            )


def run_sweep(
    plan: SweepPlan, *, out: str | Path | None = None, runs_base: str | Path = "runs", log: Callable[[str], None] = _LOG
) -> Path:
    """Run (or continue) the study until `plan.trials` trials have completed or been pruned. The sweep folder
    records its own status (status.json) besides sweep.json and trials.json; each trial is a train job.
    The storage is opened and checked before the folder's first write: a refused study changes nothing in
    it, and a folder this command created is removed again."""
    require("optuna", "mnistlab sweep", "sweep")  # an extra: one line naming the pip command when it is missing
    import optuna

    plan.check()
    sweep_dir = (Path(out) if out else Path(runs_base) / f"sweep-{plan.study}").absolute()
    created = not sweep_dir.exists() and not sweep_dir.is_symlink()
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{sweep_dir}: cannot create the sweep directory ({e.strerror})") from None
    verbosity = optuna.logging.get_verbosity()  # Optuna's log level is global: left as it was found
    opened: dict[str, Any] = {}

    def claim(path: Path) -> None:  # before the first write: the folder's record, then the study it names
        _check_folder(plan, path)
        opened["url"] = url = plan.storage or f"sqlite:///{(path / STUDY_DB).resolve()}"
        # workers started together would race to create the storage's tables: one at a time on this machine
        with FolderLock(path, what="sweep", wait=True, name=STUDY_LOCK):
            opened["study"] = _open_study(plan, url, log)
        opened["token"] = _pin_identity(opened["study"], plan, url)
        _check_same_study(path, opened["token"], plan)
        opened["claimed"] = True

    try:
        with job_folder(sweep_dir, job="sweep", existing=True, claim=claim) as job:
            job.fields["trials"] = plan.trials
            _run(plan, job, opened["study"], opened["url"], opened["token"], log)
    except BaseException:
        if created and "claimed" not in opened:  # refused before its first write: leave no folder behind
            (sweep_dir / STUDY_LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                sweep_dir.rmdir()  # only if nothing else is in it
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
    return sweep_dir


def _check_same_study(sweep_dir: Path, token: str, plan: SweepPlan) -> None:
    """A study deleted and created again under the same name (or sqlite:///:memory: run twice) starts its trial
    numbers over: in this folder its trial-0000 and trials.json would meet the old study's. Refused."""
    if not (sweep_dir / SWEEP_FILE).exists():
        return
    recorded = read_record(sweep_dir).get("study_token")
    if recorded is not None and recorded != token:
        raise ConfigError(
            f"{sweep_dir}: holds the trials of an earlier study named {plan.study} (kept, with its "
            f"{TRIALS_FILE}); the storage now holds another study of that name (deleted and created "
            f"again, or in memory): give this one another --out"
        )


def _run(plan: SweepPlan, job: JobFolder, study: Any, url: str, token: str, log: Callable[[str], None]) -> None:
    import optuna

    job.writer.json(
        job / SWEEP_FILE,
        {
            **plan.record(),
            "trials": plan.trials,
            "url": masked(url),
            "heartbeat": plan.heartbeat,
            "grace": plan.grace,
            "study_token": token,
        },
    )
    storage = _Guard(plan, url, log)
    storage.call(lambda: _snapshot(study, job), "reading the study's trials")
    done = storage.call(lambda: _counted(study), "reading the study")
    log(
        f"sweep {plan.study}: {plan.direction} {plan.objective} over {len(plan.params)} parameter(s); "
        f"{done} of {plan.trials} trials done; storage {masked(url)}"
    )
    current: dict[str, int] = {}
    objective = _objective(plan, study, job.path, log, storage, current)
    with progress.bar(plan.trials, f"sweep {plan.study}", "trial", initial=done) as bar:
        attempts = _trials(plan, job, study, storage, objective, current, bar, log)
    with _quiet_optuna():
        storage.call(lambda: optuna.storages.fail_stale_trials(study), "failing stale trials")
    storage.call(lambda: _snapshot(study, job), "reading the study's trials")
    if _counted(study) < plan.trials:
        raise MnistlabError(
            f"sweep {plan.study}: only {_counted(study)} of {plan.trials} trials finished after "
            f"{attempts} attempts (the others failed: see `mnistlab report {job.path}`)"
        )


def _trials(
    plan: SweepPlan,
    job: JobFolder,
    study: Any,
    storage: Any,
    objective: Callable[[Any], float],
    current: dict[str, int],
    bar: Any,
    log: Callable[[str], None],
) -> int:
    """Trials one at a time until `plan.trials` are counted (completed or pruned), or 3 times as many attempts;
    the bar shows the counted trials (other workers' too). Returns the attempts made."""
    import optuna

    attempts, limit = 0, 3 * plan.trials  # failures (diverged trials) do not count; bound the retries
    while storage.call(lambda: _counted(study), "reading the study") < plan.trials and attempts < limit:
        attempts += 1
        current.clear()
        try:  # optimize, one trial at a time: it fails stale trials first and beats the heartbeat meanwhile
            with _quiet_optuna():
                study.optimize(objective, n_trials=1, catch=(DivergenceError,))
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            if "trial" not in current or not storage.finished(study, current["trial"]):
                raise
            log(
                f"trial {current['trial']}: marked failed while this worker was stopped (no heartbeat for "
                f"{plan.grace} s), and queued again; this worker goes on"
            )
        except Exception as e:  # noqa: BLE001 - a storage fault, however Optuna passes it on; anything else raised
            fault = storage.fault_in(e)
            if fault is None:
                raise
            doing = f"ending trial {current.get('trial', '?')}"
            # back once the storage answers again; one line if it stays unreachable
            storage.call(lambda: study.get_trials(deepcopy=False), doing)
            log(
                f"trial {current.get('trial', '?')}: the storage failed while it ended ({storage.line(fault)}), and "
                f"is back; this worker goes on"
            )
        finally:
            with contextlib.suppress(*storage.errors):  # the storage down: the last snapshot stays as it was
                _snapshot(study, job)
                counted = _counted(study)
                job.progress(trials_done=counted)
                bar.update(counted - bar.n)  # other workers' trials count too
    return attempts


class StorageUnreachable(MnistlabError):
    """The study's database could not be reached for longer than the grace period."""


class TakenOver(MnistlabError):
    """This worker's trial was failed by another one (this worker stopped beating past the grace period)."""


class _Guard:
    """Calls to the study's storage that outlive a database stopped or restarted for a while: retried until
    the grace period has passed (after it, other workers count this one as dead anyway), then one line naming
    what really failed (Optuna words a lost connection as 'invalid data ... exceeding max length')."""

    def __init__(self, plan: SweepPlan, url: str, log: Callable[[str], None]) -> None:
        import optuna
        from sqlalchemy.exc import SQLAlchemyError

        self.plan, self.url, self.log = plan, url, log
        self.errors: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError, SQLAlchemyError)

    def line(self, e: BaseException) -> str:
        cause = e.__cause__ if e.__cause__ is not None and not isinstance(e, MnistlabError) else e
        return masked(_first_line(cause), self.url)

    def unreachable(self, e: BaseException, doing: str) -> StorageUnreachable:
        return StorageUnreachable(
            f"--storage {masked(self.url)}: unreachable for {self.plan.grace} s (the grace "
            f"period) while {doing} ({self.line(e)}); this worker stops, its trial is failed "
            f"by the next worker once its heartbeat is stale, and the same command continues "
            f"the study"
        )

    def call(self, fn: Callable[[], Any], doing: str) -> Any:
        deadline, delay = time.monotonic() + self.plan.grace, 0.25
        while True:
            try:
                return fn()
            except self.errors as e:
                if time.monotonic() >= deadline:
                    raise self.unreachable(e, doing) from None
                time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(2 * delay, 5.0)

    def fault_in(self, e: BaseException) -> BaseException | None:
        """The storage error that `e` is, or that caused it: when its final write fails, Optuna's trial loop can
        end in an UnboundLocalError of its own, raised while handling the database's error."""
        return _in_chain(e, lambda c: isinstance(c, (*self.errors, StorageUnreachable)))

    def finished(self, study: Any, number: int) -> bool:
        from optuna.trial import TrialState

        trials = self.call(lambda: study.get_trials(deepcopy=False), "reading the study")
        return any(t.number == number and t.state != TrialState.RUNNING for t in trials)


def _objective(
    plan: SweepPlan, study: Any, sweep_dir: Path, log: Callable[[str], None], storage: _Guard, current: dict[str, int]
) -> Callable[[Any], float]:
    import optuna

    started_in = os.getcwd()

    def write(fn: Callable[[], Any], doing: str) -> Any:
        """A write to this trial's record: a trial failed meanwhile by another worker is said in one line."""
        try:
            return storage.call(fn, doing)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise TakenOver(
                f"trial {current['trial']}: marked failed by another worker while this one was stopped "
                f"(no heartbeat for {plan.grace} s); its parameters run again as a new trial"
            ) from None

    def objective(trial: optuna.Trial) -> float:
        current["trial"] = trial.number
        # a trial's model may change the working directory; the next one starts where the command did, so that
        # a relative model spec names the same file for every trial (the sweep's own paths are absolute)
        with contextlib.suppress(OSError):
            os.chdir(started_in)
        run_dir = sweep_dir / f"trial-{trial.number:04d}"
        # a retried trial inherits its predecessor's attributes: replace them before anything else
        write(lambda: trial.set_user_attr("run_dir", str(run_dir.resolve())), "recording the trial")
        write(lambda: trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}"), "recording the trial")
        write(lambda: trial.set_user_attr("result", _result([])), "recording the trial")
        values = {p.name: write(functools.partial(p.suggest, trial), "drawing its parameters") for p in plan.params}
        cfg = plan.base.replace(**values)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        log(f"trial {trial.number}: {shown}")
        seen: list[dict[str, float]] = []

        def report(row: dict[str, float]) -> bool:
            seen.append(row)
            write(lambda: trial.set_user_attr("result", _result(seen)), "recording an epoch")
            write(lambda: trial.report(row[plan.objective], int(row["epoch"])), "recording an epoch")
            with _quiet_optuna():  # a dead worker's trial is failed within the grace period, not after ours
                storage.call(lambda: optuna.storages.fail_stale_trials(study), "failing stale trials")
            return bool(storage.call(trial.should_prune, "asking the pruner"))

        try:
            run = _train_trial(cfg, run_dir, report)
        except DivergenceError as e:  # the storage's faults are said once, by the sweep's loop
            log(f"trial {trial.number}: {e}")
            raise
        rows = run.metrics()
        write(lambda: trial.set_user_attr("result", _result(rows)), "recording the trial")
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
    return {
        "best_val_loss": min((r["val_loss"] for r in rows), default=None),
        "best_val_accuracy": max((r["val_accuracy"] for r in rows), default=None),
        "epochs": len(rows),
        "seconds": sum(r["epoch_seconds"] for r in rows),
    }


def _train_trial(cfg: TrainConfig, run_dir: Path, report: Callable[[dict[str, float]], bool]) -> RunDir:
    from mnistlab.jobs.train import train_run

    # a run directory left by an earlier, killed worker for this trial number cannot exist: Optuna never
    # reuses a number; a leftover from a crash before the first write is handled by jobs.folder.new_folder.
    # One that holds a run belongs to another study of this name: said in the sweep's words (it has no --resume)
    if run_dir.is_dir() and not run_dir.is_symlink() and not only_leftovers(run_dir):
        raise ConfigError(
            f"{run_dir}: already holds a run, of another study with this name; give this sweep another --out"
        )
    return train_run(cfg, run_dir=run_dir, log=quiet, progress=False, on_epoch=report)


def _snapshot(study: Any, job: JobFolder) -> None:
    """The study's trials as this worker sees them now, so that the folder can be reported anywhere."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        result = t.user_attrs.get("result") or _result([])
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "params": dict(t.params),
                "value": t.value if t.values else None,
                "run_dir": t.user_attrs.get("run_dir"),
                "worker": t.user_attrs.get("worker"),
                "retry_of": t.system_attrs.get("failed_trial"),
                **result,
            }
        )
    job.writer.json(job / TRIALS_FILE, rows)

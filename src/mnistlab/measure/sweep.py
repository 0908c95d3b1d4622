"""`mnistlab sweep`: a hyper-parameter study on Optuna, each trial an ordinary run directory.

The study lives in an Optuna storage (default: SQLite in the sweep directory; any Optuna URL works,
so machines can share one study through a database server). The same command started again continues
the study: finished trials are kept; a trial whose trainer died (its run directory's lock is free) is
marked failed, and new trials are run until N have completed or been pruned.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError, DivergenceError, MnistlabError
from mnistlab.core.lock import FolderLock
from mnistlab.core.rundir import RunDir, open_run, read_json, write_json
from mnistlab.training.config import TrainConfig

SWEEP_FILE = "sweep.json"
STUDY_DB = "study.db"
OBJECTIVES = {"minimize": "val_loss", "maximize": "val_accuracy"}
# settings a sweep may vary; the rest (data, device, paths) belong to the sweep as a whole
NOT_SWEPT = {"dataset", "device", "data_dir", "subset", "deterministic", "log_every"}
STALE_WITHOUT_RUN_DIR_S = 120.0  # a RUNNING trial that never got a run directory this long: its worker died
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


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


@dataclass(frozen=True)
class SweepPlan:
    study: str
    trials: int  # completed or pruned trials the study must reach
    params: tuple[ParamSpec, ...]
    base: TrainConfig
    direction: str = "minimize"
    pruner: str = "none"
    storage: str | None = None  # None: SQLite in the sweep directory

    @property
    def objective(self) -> str:
        return OBJECTIVES[self.direction]

    def record(self) -> dict[str, Any]:
        """What must match when the same sweep is started again."""
        return {"study": self.study, "params": [p.to_dict() for p in self.params], "base": self.base.to_dict(),
                "direction": self.direction, "objective": self.objective, "pruner": self.pruner}


def default_sweep_dir(study: str, runs_base: str | Path) -> Path:
    return Path(runs_base) / f"sweep-{study}"


def _storage(plan: SweepPlan, sweep_dir: Path) -> str:
    return plan.storage or f"sqlite:///{(sweep_dir / STUDY_DB).resolve()}"


def _open_study(plan: SweepPlan, url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=1) if plan.pruner == "median" else optuna.pruners.NopPruner()
    try:
        # a generous SQLite timeout: two workers on one file wait for each other instead of failing
        storage = (optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
                   if url.startswith("sqlite:") else url)
        return optuna.create_study(study_name=plan.study, storage=storage, load_if_exists=True,
                                   direction=plan.direction, pruner=pruner)
    except MnistlabError:
        raise
    except Exception as e:  # sqlalchemy, a missing driver, a bad URL: the storage cannot be used
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--storage {url}: cannot open the study ({first})") from None


def _trial_lock(sweep_dir: Path, number: int) -> FolderLock:
    """Held by the worker that runs a trial, from just after Optuna hands it out until its result is told."""
    return FolderLock(sweep_dir, what=f"trial {number}", name=f".trial-{number:04d}.lock")


def _fail_dead_trials(study: Any, sweep_dir: Path, log: Callable[[str], None]) -> None:
    """RUNNING trials whose worker is gone (the trial's lock is free) are marked failed."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "run_dir" not in t.user_attrs:  # set once the worker holds the lock: until then, judge by age
            started = t.datetime_start.timestamp() if t.datetime_start else time.time()
            dead = time.time() - started > STALE_WITHOUT_RUN_DIR_S
        else:
            try:
                with _trial_lock(sweep_dir, t.number):
                    dead = True  # nobody holds it: its worker died before telling the result
            except MnistlabError:
                dead = False  # a live worker is running it
        if dead:
            try:
                study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
            except ValueError:  # another worker recorded it first
                continue
            log(f"trial {t.number}: its worker stopped before finishing; marked failed")


def _counted(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_sweep(plan: SweepPlan, *, out: str | Path | None = None, runs_base: str | Path = "runs",
              log: Callable[[str], None] = print) -> Path:
    """Run (or continue) the study until `plan.trials` trials have completed or been pruned."""
    import optuna

    if not _NAME.match(plan.study):
        raise ConfigError(f"--study {plan.study!r}: use letters, digits, '.', '_' and '-' (a folder is named after it)")
    if plan.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {plan.trials}")
    if not plan.params:
        raise ConfigError("a sweep needs at least one --param")
    sweep_dir = Path(out) if out else default_sweep_dir(plan.study, runs_base)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{sweep_dir}: cannot create the sweep directory ({e.strerror})") from None
    url = _storage(plan, sweep_dir)
    record = {**plan.record(), "trials": plan.trials, "storage": url}
    if (sweep_dir / SWEEP_FILE).exists():
        old = read_json(sweep_dir / SWEEP_FILE)
        if not isinstance(old, dict) or {k: old.get(k) for k in plan.record()} != plan.record():
            raise ConfigError(f"{sweep_dir}: holds a sweep started with other settings (see its {SWEEP_FILE}); "
                              f"use the same --param and train options, or another --study / --out")
    write_json(sweep_dir / SWEEP_FILE, record)  # the trial count may grow between invocations
    # workers started together would race to create the storage's tables: one at a time on this machine
    with FolderLock(sweep_dir, what="sweep", wait=True, name=".study.lock"):
        study = _open_study(plan, url)
    log(f"sweep {plan.study}: {plan.direction} {plan.objective} over {len(plan.params)} parameter(s); "
        f"{_counted(study)} of {plan.trials} trials done; storage {url}")

    def objective(trial: optuna.Trial) -> float:
        run_dir = sweep_dir / f"trial-{trial.number:04d}"
        values = {p.name: p.suggest(trial) for p in plan.params}
        cfg = plan.base.replace(**values)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        log(f"trial {trial.number}: {shown}")

        def report(row: dict[str, float]) -> bool:
            trial.report(row[plan.objective], int(row["epoch"]))
            return trial.should_prune()

        run = _train_trial(cfg, run_dir, report)
        rows = run.metrics()
        if run.status().get("state") == "pruned":
            log(f"trial {trial.number}: pruned after epoch {len(rows)}")
            raise optuna.TrialPruned()
        values_seen = [r[plan.objective] for r in rows]
        best = min(values_seen) if plan.direction == "minimize" else max(values_seen)
        log(f"trial {trial.number}: best {plan.objective} {best:.4f} in {len(rows)} epochs")
        return best

    attempts, limit = 0, 3 * plan.trials  # failures (diverged trials) do not count; bound the retries
    while _counted(study) < plan.trials and attempts < limit:
        _fail_dead_trials(study, sweep_dir, log)
        attempts += 1
        trial = study.ask()
        # ask/tell rather than optimize: the lock must cover the trial until its result is stored
        with _trial_lock(sweep_dir, trial.number):
            trial.set_user_attr("run_dir", str((sweep_dir / f"trial-{trial.number:04d}").resolve()))
            try:
                value = objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            except DivergenceError as e:
                log(f"trial {trial.number}: {e}")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            except BaseException:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            else:
                study.tell(trial, value)
    _fail_dead_trials(study, sweep_dir, log)
    if _counted(study) < plan.trials:
        raise MnistlabError(f"sweep {plan.study}: only {_counted(study)} of {plan.trials} trials finished after "
                            f"{attempts} attempts (the others failed: see `mnistlab report {sweep_dir}`)")
    return sweep_dir


def _train_trial(cfg: TrainConfig, run_dir: Path, report: Callable[[dict[str, float]], bool]) -> RunDir:
    from mnistlab.training.runner import train

    # a run directory left by an earlier, killed worker for this trial number cannot exist: Optuna never
    # reuses a number; a leftover from a crash before the first write is handled by create_run_dir
    return train(cfg, run_dir=run_dir, log=lambda m: None, progress=False, on_epoch=report)


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    params: dict[str, Any]
    best_val_loss: float | None
    best_val_accuracy: float | None
    epochs: int
    seconds: float
    run_dir: str | None


def sweep_results(sweep_dir: str | Path) -> tuple[dict[str, Any], list[TrialRow]]:
    """The sweep's record and one row per trial, read from the study and the trials' run directories."""
    import optuna

    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})")
    record = read_json(sweep_dir / SWEEP_FILE)
    if not isinstance(record, dict) or not isinstance(record.get("study"), str) \
            or not isinstance(record.get("storage"), str):
        raise ConfigError(f"{sweep_dir / SWEEP_FILE}: malformed (needs study and storage)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=record["study"], storage=record["storage"])
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{sweep_dir}: cannot open its study ({first})") from None
    rows = []
    for t in study.get_trials(deepcopy=False):
        metrics, run_dir = [], t.user_attrs.get("run_dir")
        if isinstance(run_dir, str) and Path(run_dir).is_dir():
            try:
                metrics = open_run(run_dir).metrics()
            except MnistlabError:
                metrics = []
        rows.append(TrialRow(
            number=t.number, state=t.state.name.lower(), params=dict(t.params),
            best_val_loss=min((r["val_loss"] for r in metrics), default=None),
            best_val_accuracy=max((r["val_accuracy"] for r in metrics), default=None),
            epochs=len(metrics), seconds=sum(r["epoch_seconds"] for r in metrics), run_dir=run_dir))
    return record, rows


def best_trial(record: dict[str, Any], rows: list[TrialRow]) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete"]
    key = (lambda r: r.best_val_loss) if record.get("direction") == "minimize" else (lambda r: -r.best_val_accuracy)
    done = [r for r in done if r.best_val_loss is not None]
    return min(done, key=key) if done else None


def format_results(record: dict[str, Any], rows: list[TrialRow]) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    head = ["trial", *names, "best val loss", "best val acc", "epochs", "time s", "state"]
    table = [head]
    for r in rows:
        table.append([str(r.number), *(_fmt(r.params.get(n)) for n in names),
                      "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                      "-" if r.best_val_accuracy is None else f"{r.best_val_accuracy:.2%}",
                      str(r.epochs), f"{r.seconds:.1f}", r.state])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table]
    best = best_trial(record, rows)
    lines.append(f"best trial: {best.number} ({best.run_dir})" if best else "best trial: none completed yet")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)

"""What a sweep measured, read back from its folder alone: sweep.json (what the study compares) and
trials.json (each trial's parameters, state and best objective), both validated by core/schema.py.

The sweep itself (Optuna, its storage, the workers) is the job's: mnistlab/jobs/sweep.py. Reporting
never opens the storage, so nothing is created or changed, and a moved folder still reports."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import read_json, read_json_object
from mnistlab.core.schema import Check, check, one_of

SWEEP_FILE = "sweep.json"
TRIALS_FILE = "trials.json"  # the study's trials as this folder's worker last saw them
OBJECTIVES = {"minimize": "val_loss", "maximize": "val_accuracy"}
STATES = ("complete", "pruned", "fail", "running", "waiting")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

_PARAM = {"name": "text", "choices": ["any"], "log?": "bool"}
RECORD_SCHEMA = {
    "study": Check(lambda v: isinstance(v, str) and bool(NAME.fullmatch(v)), "a study name"),
    "direction": one_of(tuple(OBJECTIVES)),
    "objective": one_of(tuple(OBJECTIVES.values())),
    "params": [_PARAM, "nonempty"],
    "base": {"*": "any"},
    "storage?": "text?",
    "url?": "text",
    "trials?": "positive count",
    "heartbeat?": "positive count",
    "grace?": "positive count",
    "pruner?": "text",
    "study_token?": "text",
}
TRIAL_SCHEMA = {
    "number": "count",
    "state": one_of(STATES),
    "params": {"*": "any"},
    "best_val_loss?": "loss?",
    "best_val_accuracy?": "fraction?",
    "epochs": "count",
    "seconds?": "seconds",
    "run_dir?": "text?",
    "worker?": "text?",
    "retry_of?": "count?",
    "value?": "number?",
}


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
    worker: str | None = None
    retry_of: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRow:
        """From a row already checked against TRIAL_SCHEMA."""
        row: dict[str, Any] = {f.name: d.get(f.name) for f in fields(cls)}
        return cls(**{**row, "seconds": row["seconds"] or 0.0})  # optional in a row: 0 when absent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_record(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json, checked field by field (and the objective that goes with the direction)."""
    path = Path(sweep_dir) / SWEEP_FILE
    record = check(read_json_object(path), RECORD_SCHEMA, str(path), ConfigError)
    if record["objective"] != OBJECTIVES[record["direction"]]:
        raise ConfigError(
            f"{path}: field 'objective' must be {OBJECTIVES[record['direction']]!r} for the direction "
            f"{record['direction']!r}, got {record['objective']!r}"
        )
    return record


def sweep_results(sweep_dir: str | Path) -> tuple[dict[str, Any], list[TrialRow]]:
    """The sweep's record and one row per trial, from the folder alone (sweep.json and trials.json)."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / SWEEP_FILE).is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep directory (no {SWEEP_FILE})")
    record = read_record(sweep_dir)
    path = sweep_dir / TRIALS_FILE
    if not path.exists():
        raise ConfigError(
            f"{path}: missing; `mnistlab sweep` with the same options writes it (and runs "
            f"nothing more once the study has its trials)"
        )
    rows = check(read_json(path), [TRIAL_SCHEMA], str(path), ConfigError)
    return record, [TrialRow.from_dict(d) for d in rows]


def best_trial(record: dict[str, Any], rows: list[TrialRow]) -> TrialRow | None:
    done = [r for r in rows if r.state == "complete" and r.best_val_loss is not None]
    if record.get("direction") == "minimize":
        return min(done, key=lambda r: r.best_val_loss or 0.0) if done else None
    done = [r for r in done if r.best_val_accuracy is not None]
    return max(done, key=lambda r: r.best_val_accuracy or 0.0) if done else None


def format_results(record: dict[str, Any], rows: list[TrialRow]) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    head = ["trial", *names, "best val loss", "best val acc", "epochs", "time s", "state"]
    table = [head]
    for r in rows:
        table.append(
            [
                str(r.number),
                *(fmt_param(r.params.get(n)) for n in names),
                "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                "-" if r.best_val_accuracy is None else f"{r.best_val_accuracy:.2%}",
                str(r.epochs),
                fmt_seconds(r.seconds),
                r.state,
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    best = best_trial(record, rows)
    lines.append(f"best trial: {best.number} ({best.run_dir})" if best else "best trial: none completed yet")
    return "\n".join(lines)


def fmt_param(v: Any) -> str:
    """A parameter's value as a table shows it: 4 significant digits for a number drawn from a range."""
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def fmt_seconds(s: float) -> str:
    """A trial's time: 0.031 s, not a 0.0 that a sub-second trial is not."""
    return f"{s:.2g}" if s < 1 else f"{s:.1f}"

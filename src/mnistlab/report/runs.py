"""What the report says about a training run: its files read and checked, its epoch table and figure,
its trend (train longer or stop?) and its device comparison. Shared by the sections that show runs.

An epoch's time is marked with what measure/epochs.EpochTiming knows of it: the first epoch of a
session (called cold only where the session's warm-up was timed apart), and an epoch measured while
the machine was busy."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.rundir import CONFIG, RunDir
from mnistlab.core.timing import Ratio
from mnistlab.core.words import percent, plural
from mnistlab.measure.epochs import EpochTiming, epoch_timing
from mnistlab.report.document import Document
from mnistlab.report.plots import plot_runs
from mnistlab.training.config import check_run_config

BUSY = "busy"  # the mark of an epoch measured while the machine was busy
RUN_HEADERS = [
    "run",
    "model",
    "device",
    "recipe",
    "epochs",
    "first epoch s",
    "steady train s/epoch median (min\u2013max)",
    "steady ms/step",
    "steady samples/s",
    "test accuracy",
    "test s",
]


def config(run: RunDir) -> dict[str, Any]:
    return check_run_config(run / CONFIG)


def device_of(run: RunDir) -> str:
    return str(run.env().get("device", "cpu")).split(":")[0]


def _ratio(a: float, b: float) -> float:
    """a / b that a zero (a loss that reached exactly 0, an instant epoch) cannot crash."""
    return a / b if b else (math.inf if a else 1.0)


def run_levers_text(cfg: dict[str, Any]) -> str:
    """A run's speed levers in words, from its config.json (old runs without the keys: eager fp32)."""
    precision = cfg.get("precision", "32")
    parts = ["fp32" if precision == "32" else precision]
    if cfg.get("channels_last"):
        parts.append("channels-last")
    if cfg.get("compile", "off") != "off":
        parts.append(f"compile={cfg['compile']}")
    if cfg.get("cuda_graphs"):
        parts.append("cuda-graphs")
    return ("eager " if cfg.get("compile", "off") == "off" and not cfg.get("cuda_graphs") else "") + " + ".join(parts)


def capped(run: RunDir) -> int | None:
    """The step limit of a run whose epochs were capped below a full epoch (quick mode), else None."""
    cap = config(run).get("max_steps")
    rows = run.metrics()
    return int(cap) if cap and rows and all(int(r["steps"]) <= int(cap) for r in rows) else None


def epoch_marks(row: dict[str, float], t: EpochTiming, *, first_column: bool = False) -> str:
    """What an epoch's time is, beyond a steady-state epoch: ' (first, after a 1.25 s cold start, busy)'
    (in a column of first epochs, 'first' goes without saying)."""
    epoch, marks = int(row["epoch"]), []
    if epoch in t.cold_epochs:
        if not first_column:
            marks.append("first")
        if row.get("warmup_s") is not None:  # the session's warm-up, timed apart: a measured cold start
            marks.append(f"after a {row['warmup_s']:.2f} s cold start")
    if epoch in t.busy_epochs:
        marks.append(BUSY)
    return f" ({', '.join(marks)})" if marks else ""


def run_summary_row(run: RunDir) -> list[str]:
    cfg, rows, test = config(run), run.metrics(), run.test() or {}
    t = epoch_timing(rows)
    cap = capped(run)
    n = f"{len(rows)} ({cap} steps each)" if cap else str(len(rows))
    if t.steady_s:
        steady = f"{t.spread.median:.2f} ({t.spread.min:.2f}\u2013{t.spread.max:.2f})"
        step = f"{statistics.median(t.steady_step_s) * 1e3:.2f}" if t.steady_step_s else "-"
        sps = f"{statistics.median(t.steady_samples_per_s):,.0f}"
    else:
        steady = step = sps = "- (no steady epoch)"
    first = ", ".join(
        f"{r['train_seconds']:.2f}" + epoch_marks(r, t, first_column=True)
        for r in rows
        if int(r["epoch"]) in t.cold_epochs
    )
    recipe = (
        f"batch {cfg['batch_size']}, SGD lr {cfg['lr']} momentum {cfg['momentum']}, {run_levers_text(cfg)}, "
        f"seed {cfg['seed']}"
    )
    return [
        run.name,
        cfg["model"],
        run.env().get("device", cfg["device"]),
        recipe,
        n,
        first or "-",
        steady,
        step,
        sps,
        f"{test['accuracy']:.2%}" if test else "-",
        f"{test['seconds']:.2f}" if test else "-",
    ]


def run_section(doc: Document, r: RunDir, figs: Path) -> None:
    """A run's loss plot and epoch table (first and busy epochs marked; capped epochs labelled); its settings and
    test result are in the runs' table (run_summary_row)."""
    rows = r.metrics()
    after = plural(len(rows), "epoch")
    f = plot_runs([r], figs / f"{r.name}-loss.png", title=f"{r.name}: loss after {after}")
    doc.image(f, f"{r.name}: train and validation loss after {after} (log scale)")
    t = epoch_timing(rows)
    cap = capped(r)
    doc.table(
        [
            f"epoch ({cap} steps)" if cap else "epoch",
            "train loss",
            "val loss",
            "val accuracy",
            "train s",
            "val s",
            "samples/s",
        ],
        [
            [
                int(x["epoch"]),
                f"{x['train_loss']:.4f}",
                f"{x['val_loss']:.4f}",
                f"{x['val_accuracy']:.2%}",
                f"{x['train_seconds']:.2f}" + epoch_marks(x, t),
                f"{x['val_seconds']:.2f}",
                f"{x['samples_per_s']:,.0f}",
            ]
            for x in rows
        ],
    )


PATIENCE = 3  # Q4's rule: epochs without a new low of the validation loss after which training stops


@dataclass(frozen=True)
class TrainLonger:
    """Q4 (train longer, or is it already too long?), answered by one rule over the validation curve: early
    stopping with a patience of PATIENCE epochs, the trainer's own rule (mnistlab train --early-stop N: stop
    once the validation loss has reached no new low for N epochs). Too long: the rule would have stopped the
    run before its last epoch. Otherwise train longer: the curve is still reaching new lows."""

    run: str
    rows: list[dict[str, float]]

    @property
    def epochs(self) -> int:
        return len(self.rows)

    @property
    def best(self) -> dict[str, float]:
        return min(self.rows, key=lambda r: r["val_loss"])  # the first of equal lows, as the trainer keeps it

    @property
    def too_long(self) -> bool:
        return self.epochs - int(self.best["epoch"]) >= PATIENCE

    def answer(self) -> str:
        """One sentence: the verdict, and the numbers of the curve it rests on."""
        n = self.epochs
        if n < 2:
            return f"{n} epoch is too few to read a trend from."
        b, best = int(self.best["epoch"]), self.best["val_loss"]
        rule = f"early stopping with a patience of {PATIENCE} epochs"
        if self.too_long:
            return (
                f"{n} epochs is too long: the validation loss was lowest at epoch {b} ({best:.4f}) and no lower in "
                f"the {plural(n - b, 'epoch')} after it; {rule} would have stopped at epoch {b + PATIENCE}, "
                f"keeping epoch {b}."
            )
        k = min(5, n - 1)
        before = self.rows[-1 - k]["val_loss"]
        fall = f", down {percent(_ratio(before - best, before))} over the last {plural(k, 'epoch')}" if b == n else ""
        when = "at the last epoch" if b == n else f"at epoch {b} of {n}, fewer than {PATIENCE} epochs before the end"
        return (
            f"Train longer: the validation loss reached a new low {when} ({best:.4f}{fall}); {rule} would not "
            f"have stopped."
        )

    def evidence(self) -> list[list[str]]:
        """The curve's last epochs: each validation loss, the lowest so far and the epochs since that low."""
        rows, out, low, low_epoch = self.rows, [], math.inf, 0
        for r in rows:
            if r["val_loss"] < low:
                low, low_epoch = r["val_loss"], int(r["epoch"])
            out.append(
                [
                    str(int(r["epoch"])),
                    f"{r['train_loss']:.4f}",
                    f"{r['val_loss']:.4f}",
                    f"{low:.4f}",
                    str(int(r["epoch"]) - low_epoch),
                ]
            )
        return out[-(PATIENCE + 3) :]


TRAIN_LONGER_HEADERS = ["epoch", "train loss", "validation loss", "lowest so far", "epochs since the lowest"]


def train_longer(run: RunDir) -> TrainLonger:
    return TrainLonger(run.name, run.metrics())


def training_observations(run: RunDir) -> list[str]:
    """Question 4 in words: the rule's answer, then what it rests on (mnistlab.training_observations)."""
    t = train_longer(run)
    out = [f"{run.name}: {t.answer()}"]
    if t.epochs >= 2:
        last = t.rows[-1]
        out.append(
            f"{run.name}: at the last epoch the validation loss is {last['val_loss']:.4f} and the training loss "
            f"{last['train_loss']:.4f} (the training loss is averaged over an epoch of still-changing weights)."
        )
    return out


def device_comparisons(runs: list[RunDir], model: str | None = None) -> list[str]:
    """Questions 6 and 9, from the training runs: which device was faster for each model, by how much.
    Per training step (equal work: quick mode caps the CPU CNN's epochs, not the GPU's), and from
    steady-state epochs only (the first epoch of each session is left out); the one Ratio
    (core/timing.py) of the steady epochs paired in order states it."""
    out = []
    by_model: dict[str, dict[str, RunDir]] = {}
    for r in runs:
        by_model.setdefault(config(r)["model"], {})[device_of(r)] = r
    for m, devs in by_model.items():
        cpu = devs.get("cpu")
        if cpu is None or (model is not None and m != model):
            continue
        for dev, run in devs.items():
            if dev == "cpu":
                continue
            a, b = epoch_timing(cpu.metrics()).steady_step_s, epoch_timing(run.metrics()).steady_step_s
            if not a or not b:
                out.append(
                    f"{m}: no steady-state epoch on both devices (every epoch of one of them is the first "
                    f"of its session), so no fair comparison."
                )
                continue
            out.append(
                f"{m}: a training step on {dev} took {statistics.median(b) * 1e3:.2f} ms against "
                f"{statistics.median(a) * 1e3:.2f} ms on the CPU: {dev} vs the CPU "
                f"{Ratio.paired(a, b).words()} (steady-state epochs, each device's paired in order; "
                f"per step so that runs with different step limits compare equal work)."
            )
    return out

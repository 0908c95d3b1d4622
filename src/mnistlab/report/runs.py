"""What the report says about a training run: its files read and checked, its epoch table and figure,
its trend (train longer or stop?) and its device comparison. Shared by the sections that show runs.

An epoch's time is marked with what measure/epochs.EpochTiming knows of it: the first epoch of a
session (called cold only where the session's warm-up was timed apart), and an epoch measured while
the machine was busy."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from mnistlab.core.rundir import CONFIG, RunDir
from mnistlab.measure.epochs import EpochTiming, epoch_timing
from mnistlab.core.timing import Ratio
from mnistlab.report.document import Document, percent, plural
from mnistlab.report.plots import plot_runs
from mnistlab.training.config import check_run_config

OVERFIT_RATIO = 1.5  # validation loss over training loss beyond which we call it overfitting
BUSY = "busy"  # the mark of an epoch measured while the machine was busy
RUN_HEADERS = ["run", "model", "device", "epochs", "first epoch s", "steady train s/epoch median (min\u2013max)",
               "steady ms/step", "steady samples/s", "test accuracy", "test s"]


def config(run: RunDir) -> dict[str, Any]:
    return check_run_config(run / CONFIG)


def device_of(run: RunDir) -> str:
    return str(run.env().get("device", "cpu")).split(":")[0]


def _ratio(a: float, b: float) -> float:
    """a / b that a zero (a loss that reached exactly 0, an instant epoch) cannot crash."""
    return a / b if b else (math.inf if a else 1.0)


def _fmt_s(x: float) -> str:
    return f"{x:.2f}"


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
    first = ", ".join(_fmt_s(r["train_seconds"]) + epoch_marks(r, t, first_column=True)
                      for r in rows if int(r["epoch"]) in t.cold_epochs)
    return [run.name, cfg["model"], run.env().get("device", cfg["device"]), n, first or "-", steady, step, sps,
            f"{test['accuracy']:.2%}" if test else "-", _fmt_s(test["seconds"]) if test else "-"]


def run_section(doc: Document, r: RunDir, figs: Path) -> None:
    """A run's settings, loss plot, epoch table (first and busy epochs marked; capped epochs labelled) and test line."""
    rows = r.metrics()
    cfg = config(r)
    sessions = sorted({int(x.get("session", 1)) for x in rows})
    doc.p(f"{r.name}: {cfg['model']} on {cfg['dataset']}, batch {cfg['batch_size']}, SGD lr {cfg['lr']} "
          f"momentum {cfg['momentum']}, {run_levers_text(cfg)}, seed {cfg['seed']}"
          + (f", at most {cfg['max_steps']} steps per epoch" if cfg.get("max_steps") else "")
          + (f"; trained in {len(sessions)} sessions (resumed; dotted line on the plots)" if len(sessions) > 1 else "")
          + ".")
    after = plural(len(rows), "epoch")
    f = plot_runs([r], figs / f"{r.name}-loss.png", title=f"{r.name}: loss after {after}")
    doc.image(f, f"{r.name}: train and validation loss after {after} (log scale)")
    t = epoch_timing(rows)
    cap = capped(r)
    doc.table([f"epoch ({cap} steps)" if cap else "epoch", "train loss", "val loss", "val accuracy", "train s",
               "val s", "samples/s"],
              [[int(x["epoch"]), f"{x['train_loss']:.4f}", f"{x['val_loss']:.4f}", f"{x['val_accuracy']:.2%}",
                _fmt_s(x["train_seconds"]) + epoch_marks(x, t), _fmt_s(x["val_seconds"]),
                f"{x['samples_per_s']:,.0f}"] for x in rows])
    if t.busy_epochs:
        doc.p(f"{BUSY}: measured while the machine's load average exceeded its cores; not stable evidence.")
    test = r.test()
    if test:
        doc.p(f"{r.name} test set: loss {test['loss']:.4f}, accuracy {test['accuracy']:.2%} "
              f"({test['correct']}/{test['total']}), evaluated in {test['seconds']:.2f} s.")


def training_observations(run: RunDir) -> list[str]:
    """Question 4: train longer, or stop early? Read off the validation curve."""
    rows = run.metrics()
    if len(rows) < 2:
        return [f"{run.name}: only {plural(len(rows), 'epoch')}, too few to judge the trend."]
    best = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    n, b = int(last["epoch"]), int(best["epoch"])
    out = []
    if b == n:
        k = min(5, len(rows) - 1)
        before = rows[-1 - k]["val_loss"]
        drop = _ratio(before - last["val_loss"], before)
        out.append(f"{run.name}: validation loss was still falling at the last epoch ({last['val_loss']:.4f} at "
                   f"epoch {n}, down {percent(drop)} over the last {plural(k, 'epoch')}): training longer may still help, "
                   f"with diminishing returns.")
    else:
        out.append(f"{run.name}: validation loss was lowest at epoch {b} ({best['val_loss']:.4f}) and did not "
                   f"improve in the {plural(n - b, 'epoch')} after it (epoch {n}: {last['val_loss']:.4f}); training longer "
                   f"does not help, and early stopping (--early-stop {max(1, min(3, n - b))}) would keep epoch {b}.")
    gap, ratio = last["val_loss"] - last["train_loss"], _ratio(last["val_loss"], last["train_loss"])
    if gap <= 0:
        verdict = ("validation loss is below the training loss (which is averaged over an epoch of still-changing "
                   "weights): no sign of overfitting.")
    elif ratio > OVERFIT_RATIO:
        verdict = "the model fits the training data clearly better than unseen data: it has started to overfit."
    else:
        verdict = "the two are close: no sign of overfitting yet."
    times = f"{ratio:.2f}x" if math.isfinite(ratio) else "no ratio: the training loss is 0"
    out.append(f"{run.name}: at the end the validation loss is {last['val_loss']:.4f} against a training loss of "
               f"{last['train_loss']:.4f} ({times}); {verdict}")
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
                out.append(f"{m}: no steady-state epoch on both devices (every epoch of one of them is the first "
                           f"of its session), so no fair comparison.")
                continue
            out.append(f"{m}: a training step on {dev} took {statistics.median(b) * 1e3:.2f} ms against "
                       f"{statistics.median(a) * 1e3:.2f} ms on the CPU: {dev} vs the CPU "
                       f"{Ratio.paired(a, b).marked()} (steady-state epochs, each device's paired in order; "
                       f"per step so that runs with different step limits compare equal work).")
    return out

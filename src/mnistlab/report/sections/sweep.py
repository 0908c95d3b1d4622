"""A sweep (sweep.json, trials.json): every trial in a table, and the objective against each swept parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mnistlab.measure.sweeps import TRIALS_FILE, TrialRow, best_trial, fmt_param, fmt_seconds
from mnistlab.report import plots
from mnistlab.report.document import Document
from mnistlab.report.inputs import Inputs
from mnistlab.report.sections.section import Section

STATE_COLORS = {"complete": "C0", "pruned": "C1", "fail": "C3", "running": "C7"}


@plots.literal_text
def plot_objective(record: dict[str, Any], rows: list[TrialRow], out: Path) -> Path:
    """One panel per parameter: each trial's best objective (log axis for a log-scaled parameter)."""
    specs = record["params"]
    objective = record["objective"]
    fig = Figure(figsize=(4.2 * len(specs), 3.6))
    axes = fig.subplots(1, len(specs), squeeze=False)
    for ax, spec in zip(axes[0], specs, strict=True):
        name = spec["name"]
        # a choice's place on the axis is its place in the sweep's space (matplotlib's own categorical
        # axis would order the choices as the trials happened to draw them)
        order = [str(c) for c in spec["choices"] or []]
        order += sorted({str(r.params[name]) for r in rows if name in r.params} - set(order)) if order else []
        for state, color in STATE_COLORS.items():
            pts = [
                (r.params[name], getattr(r, f"best_{objective}"))
                for r in rows
                if r.state == state and name in r.params and getattr(r, f"best_{objective}") is not None
            ]
            if pts:
                xs = [order.index(str(x)) for x, _ in pts] if order else [x for x, _ in pts]
                ax.scatter(xs, [y for _, y in pts], color=color, label=state, s=24)
        if order:
            ax.set_xticks(range(len(order)), order)
            ax.set_xlim(-0.5, len(order) - 0.5)
        if spec.get("log"):
            ax.set_xscale("log")
            plots.plain_log_labels(ax.xaxis)
        ax.set_xlabel(name + (" (log scale)" if spec.get("log") else ""))
        ax.set_ylabel(f"best {objective.replace('_', ' ')}")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Sweep {record['study']}: {record['direction']} {objective}")
    return plots.save_figure(fig, out)


def write(doc: Document, inputs: Inputs) -> None:
    if inputs.sweep is None:
        return
    record, rows = inputs.sweep
    counts = {s: sum(r.state == s for r in rows) for s in dict.fromkeys(r.state for r in rows)}
    doc.p(
        f"Objective: {record['direction']} {record['objective']} (the best epoch of each trial). "
        f"{len(rows)} trials: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f". Storage: {record.get('url') or record.get('storage') or 'SQLite in the sweep folder'} "
        f"(this table: the study as this folder's worker last saw it, {TRIALS_FILE})."
    )
    names = list(dict.fromkeys(k for r in rows for k in r.params))
    doc.table(
        ["trial", *names, "best val loss", "best val accuracy", "epochs", "time s", "state", "run directory"],
        [
            [
                r.number,
                *(fmt_param(r.params.get(n)) for n in names),
                "-" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
                "-" if r.best_val_accuracy is None else f"{r.best_val_accuracy:.2%}",
                r.epochs,
                fmt_seconds(r.seconds),
                r.state,
                Path(r.run_dir).name if r.run_dir else "-",
            ]
            for r in rows
        ],
    )
    best = best_trial(record, rows)
    doc.p(f"Best trial: {best.number}, run directory {best.run_dir}." if best else "No trial has completed yet.")
    if rows:
        fig = plot_objective(record, rows, inputs.figs / "sweep-objective.png")
        doc.image(fig, "Each trial's best objective against each swept parameter")


SECTION = Section(write, report="sweep")

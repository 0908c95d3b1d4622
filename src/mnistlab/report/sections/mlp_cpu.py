"""What Q2, Q3 and Q4 read: the MLP's CPU run and its first training (the notebook's first 10 epochs)."""

from __future__ import annotations

from mnistlab.core.rundir import RunDir
from mnistlab.report.inputs import Inputs
from mnistlab.report.lab_state import no_run

NO_MLP = "no CPU run of the MLP in these directories"


def mlp_run(inputs: Inputs) -> RunDir | None:
    return inputs.cpu_run("mlp")


def missing(inputs: Inputs) -> str | None:
    return None if mlp_run(inputs) else no_run(inputs, "mlp", cpu=True) or NO_MLP


def first_session(run: RunDir) -> list[dict[str, float]]:
    """The epochs of the run's first train/resume session."""
    rows = run.metrics()
    first = min(int(x.get("session", 1)) for x in rows)
    return [x for x in rows if int(x.get("session", 1)) == first]


def first_training(inputs: Inputs, run: RunDir) -> list[dict[str, float]]:
    """The notebook's first training (before it trains for more epochs): in a lab, the plan's first epochs,
    however many sessions a stop and `lab --resume` cut them into; else the run's first session."""
    planned = ((inputs.lab or {}).get("plan") or {}).get("mlp_epochs")
    if isinstance(planned, int) and planned > 0:
        return run.metrics()[:planned]
    return first_session(run)

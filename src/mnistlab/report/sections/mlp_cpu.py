"""What Q2, Q3 and Q4 read: the MLP's CPU run and its first train/resume session."""

from __future__ import annotations

from mnistlab.core.rundir import RunDir
from mnistlab.report.inputs import Inputs

NO_MLP = "no CPU run of the MLP in these directories"


def mlp_run(inputs: Inputs) -> RunDir | None:
    return inputs.cpu_run("mlp")


def missing(inputs: Inputs) -> str | None:
    return None if mlp_run(inputs) else NO_MLP


def first_session(run: RunDir) -> list[dict[str, float]]:
    """The epochs of the run's first train/resume session (the notebook's first training)."""
    rows = run.metrics()
    first = min(int(x.get("session", 1)) for x in rows)
    return [x for x in rows if int(x.get("session", 1)) == first]

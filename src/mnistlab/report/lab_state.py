"""How far a lab got: each planned run's state, read from its folder (never written), and the lab's parts that
have not finished, in words ("mlp-cpu stopped after 2 of 10 epochs"). The report says it; `lab --resume`
decides from it what to run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mnistlab.core.rundir import CONFIG, RunDir
from mnistlab.core.words import plural
from mnistlab.measure.speedrun import SpeedrunResult

if TYPE_CHECKING:
    from mnistlab.report.inputs import Inputs

LONGER_RUN = "cnn-cpu-longer"  # the full lab's fresh CNN, trained on to see which epoch reaches the notebook's 97.4%
LONGER_EPOCHS = 12  # its epochs: a bound on the measurement's time (a fresh CNN had 96.4% test accuracy after 5)
FINISHED = ("completed", "finished")  # a training session that ended as planned ("finished": older runs)
WHY = {
    "running": "its status still says running: killed, or still at work",
    "interrupted": "stopped by Ctrl-C",
    "terminated": "stopped by SIGTERM",
}


@dataclass(frozen=True)
class RunState:
    name: str
    planned: int  # the epochs it has when the lab's plan is done
    started: bool  # it has a config.json
    epochs: int  # finished epochs (metrics.csv)
    state: str | None  # status.json's state
    message: str | None  # a failure's one line

    @property
    def finished_session(self) -> bool:
        return self.state in FINISHED

    @property
    def done(self) -> bool:
        return self.started and self.finished_session and self.epochs >= self.planned

    def words(self) -> str:
        """'mlp-cpu stopped after 2 of 10 epochs (its status still says running: killed, or still at work)'."""
        if not self.started:
            return f"{self.name} not run yet"
        why = WHY.get(self.state or "", f"{self.state}: {self.message}" if self.message else self.state)
        if self.finished_session:  # a session ended; the plan's next one (the MLP's 10 more epochs) did not run
            return f"{self.name} has {plural(self.epochs, 'epoch')} of {self.planned}"
        stopped = f"{self.name} stopped after {self.epochs} of {plural(self.planned, 'epoch')}"
        return stopped + (f" ({why})" if why else "")


def run_state(folder: Path, planned: int) -> RunState:
    """A planned run's folder as it is: started or not, epochs finished, how its last session ended."""
    folder = Path(folder)
    if not (folder / CONFIG).is_file():
        return RunState(folder.name, planned, False, 0, None, None)
    run = RunDir(folder)
    status = run.status()
    return RunState(folder.name, planned, True, len(run.metrics()), status.get("state"), status.get("message"))


def unfinished(inputs: Inputs) -> list[str]:
    """What a lab's plan has not finished, each in words; [] for a finished lab (or no lab)."""
    lab = inputs.lab
    if lab is None or RunDir(inputs.root).status().get("state") == "completed":
        return []
    plan = lab.get("plan") or {}
    out = [
        s.words()
        for s in (run_state(inputs.root / name, int(n)) for name, n in (plan.get("runs") or {}).items())
        if not s.done
    ]
    if not lab.get("bench"):
        out.append("the bench has not finished")
    if not lab.get("speedrun"):
        out.append("the speedrun has not finished")
    out += [
        f"the speedrun stopped after {len(s.seeds)} of {plural(s.seeds_planned, 'seed')}"
        for s in inputs.results_of(SpeedrunResult)
        if not s.complete
    ]
    return out


def unfinished_line(inputs: Inputs) -> str | None:
    parts = unfinished(inputs)
    if not parts:
        return None
    return (
        f"Unfinished lab: {'; '.join(parts)}. Every answer below is from what is there; "
        f"mnistlab lab --resume {inputs.root} runs what is missing and keeps what is done."
    )


def no_run(inputs: Inputs, model: str, cpu: bool) -> str | None:
    """Why a lab has no run of `model` on the CPU (cpu) or a GPU to show, where its plan says: a run that has no
    finished epoch yet, or one the lab has not reached (None: the plan does not say)."""
    for r in inputs.unfinished:
        if not (r / CONFIG).is_file():
            continue
        cfg = r.config()
        if cfg.get("model") == model and (cfg.get("device") == "cpu") == cpu:
            return f"{r.name} has no finished epoch yet"
    runs = ((inputs.lab or {}).get("plan") or {}).get("runs") or {}
    for name in runs:
        if (
            name.startswith(f"{model}-")
            and name != LONGER_RUN
            and (name == f"{model}-cpu") == cpu
            and not (inputs.root / name / CONFIG).is_file()
        ):
            return f"{name} not run yet: the lab stopped before it"
    return None

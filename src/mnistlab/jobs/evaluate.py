"""`mnistlab eval`: a run's checkpoint on its test images. A reader: it writes nothing into the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError
from mnistlab.core.failures import blame_model
from mnistlab.core.logs import lines
from mnistlab.core.richdisplay import html_table
from mnistlab.core.rundir import CONFIG, open_run
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.jobs.folder import Log, PathLike, dataset, fixed, recorded_data

_LOG = lines(__name__)  # the default `log`: this module's logger (core/logs.py)

__all__ = ["RunEvaluation", "evaluate_run"]


@dataclass(frozen=True)
class RunEvaluation:
    """A run's checkpoint on its test images: what `mnistlab eval` shows."""

    run: Path
    model: str
    dataset: str
    checkpoint: str  # "last" or "best"
    epoch: int
    device: str
    subset: int | None  # a --subset run is tested on the first N test images, as its test.json was
    classes: tuple[str, ...]
    result: Any  # training.evaluation.EvalResult
    steps: int = 0  # a mid-epoch checkpoint (--checkpoint-every): the steps of epoch `epoch` + 1 it holds

    @property
    def when(self) -> str:
        """When the checkpoint was written: 'after epoch 3', or 'after epoch 0 and 40 steps of epoch 1'."""
        within = f" and {self.steps} steps of epoch {self.epoch + 1}" if self.steps else ""
        return f"after epoch {self.epoch}{within}"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            "checkpoint": self.checkpoint,
            "epoch": self.epoch,
            **({"steps": self.steps} if self.steps else {}),
            "subset": self.subset,
            "device": self.device,
            "model": self.model,
            "dataset": self.dataset,
        }

    def _repr_html_(self) -> str:
        test_set = "all" if self.subset is None else f"the first {self.subset:,}"
        when = f"epoch {self.epoch}" + (f" and {self.steps} steps of epoch {self.epoch + 1}" if self.steps else "")
        return html_table(
            f"{self.model} on {self.dataset}: {self.checkpoint}.pt ({when}), tested",
            [("run", self.run), ("device", self.device), ("test images", test_set), *self.result.rows()],
        )


def evaluate_run(
    run_dir: PathLike, *, checkpoint: str = "last", device: str = "auto", data_dir: str | None = None, log: Log = _LOG
) -> RunEvaluation:
    """Test a run's `last` or `best` checkpoint with the code it was trained with. Reads only."""
    from mnistlab.core.device import resolve_device
    from mnistlab.data.loader import make_test_loader
    from mnistlab.training.checkpoint import load_checkpoint, load_model_state
    from mnistlab.training.config import load_run_config
    from mnistlab.training.evaluation import evaluate
    from mnistlab.training.models import create_model, model_code_for_run

    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    run = open_run(fixed(run_dir))  # absolute: a model that changes the working directory moves nothing
    cfg = load_run_config(run / CONFIG)
    state = load_checkpoint(run / f"{checkpoint}.pt")
    dev = resolve_device(device)
    may_fetch = bool(data_dir) or not cfg.data_dir  # never into a data root that only config.json names
    root = data_root(data_dir if may_fetch else cfg.data_dir)  # absolute, before the model's code runs
    # the code the run was trained with (a file spec: the run's copy, after its SHA-256 is checked)
    model = create_model(model_code_for_run(run.path, cfg.model), get_dataset(cfg.dataset).shape)
    load_model_state(model, state, run / f"{checkpoint}.pt")
    spec, root = (
        dataset(cfg.dataset, root, log=log) if may_fetch else recorded_data(cfg.dataset, root, run / CONFIG, "a reader")
    )
    loader = make_test_loader(spec, root, dev, subset=cfg.subset)
    with blame_model(cfg.model, "during the test evaluation"):  # one line, as train gives for the same error
        result = evaluate(model.to(dev), loader, len(spec.classes))
    partial = state.get("partial")
    return RunEvaluation(
        run.path,
        cfg.model,
        cfg.dataset,
        checkpoint,
        int(state["epoch"]),
        str(dev),
        cfg.subset,
        tuple(spec.classes),
        result,
        int(partial["steps"]) if partial else 0,
    )

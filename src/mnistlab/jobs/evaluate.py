"""`mnistlab eval`: a run's checkpoint on its test images. A reader: it writes nothing into the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError, DataError
from mnistlab.core.richdisplay import html_table
from mnistlab.core.rundir import CONFIG, open_run
from mnistlab.data.datasets import DatasetSpec, data_root, get_dataset
from mnistlab.data.fetching import verify_present
from mnistlab.jobs.folder import Log, PathLike, _print, dataset

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

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "checkpoint": self.checkpoint, "epoch": self.epoch, "subset": self.subset,
                "device": self.device, "model": self.model, "dataset": self.dataset}

    def _repr_html_(self) -> str:
        test_set = "all" if self.subset is None else f"the first {self.subset:,}"
        return html_table(f"{self.model} on {self.dataset}: {self.checkpoint}.pt (epoch {self.epoch}), tested",
                          [("run", self.run), ("device", self.device), ("test images", test_set), *self.result.rows()])


def evaluate_run(run_dir: PathLike, *, checkpoint: str = "last", device: str = "auto", data_dir: str | None = None,
                 log: Log = _print) -> RunEvaluation:
    """Test a run's `last` or `best` checkpoint with the code it was trained with. Reads only."""
    from mnistlab.core.device import resolve_device
    from mnistlab.data.loader import make_test_loader
    from mnistlab.training.checkpoint import load_checkpoint, load_model_state
    from mnistlab.training.config import load_run_config
    from mnistlab.training.evaluation import evaluate
    from mnistlab.training.models import create_model, model_code_for_run

    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    run = open_run(run_dir)
    cfg = load_run_config(run / CONFIG)
    state = load_checkpoint(run / f"{checkpoint}.pt")
    dev = resolve_device(device)
    spec = get_dataset(cfg.dataset)
    # the code the run was trained with (a file spec: the run's copy, after its SHA-256 is checked)
    model = create_model(model_code_for_run(run.path, cfg.model), spec.shape)
    load_model_state(model, state, run / f"{checkpoint}.pt")
    spec, root = dataset(cfg.dataset, data_dir, log=log) if data_dir or not cfg.data_dir else (
        _recorded_data(cfg.dataset, cfg.data_dir, run / CONFIG))
    loader = make_test_loader(spec, root, dev, subset=cfg.subset)
    result = evaluate(model.to(dev), loader, len(spec.classes))
    return RunEvaluation(run.path, cfg.model, cfg.dataset, checkpoint, int(state["epoch"]), str(dev), cfg.subset,
                         tuple(spec.classes), result)


def _recorded_data(name: str, recorded: str, config: Path) -> tuple[DatasetSpec, Path]:
    """The data root a run's config.json names, only read: a reader neither creates it nor fetches into it."""
    spec, root = get_dataset(name), data_root(recorded)
    where = f"the data_dir in {config}; a reader does not fetch into it: pass --data-dir to use another data root"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({where})")
    missing = verify_present(spec, root)
    if missing:
        raise DataError(f"{spec.raw_dir(root) / missing[0].name}: not there ({where})")
    return spec, root



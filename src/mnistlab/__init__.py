"""mnistlab: train, time and profile small models on MNIST-family datasets, on CPU and GPU.

Importing the package costs nothing: each public name is imported on first use (PEP 562), so the
command line answers `--help` without loading torch.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

# when mnistlab was first imported: a speedrun's cold time counts from here where the process's own
# start cannot be read (core/processstart.py)
_IMPORTED_AT = time.time()

# public name -> module that defines it (layers: core <- data <- training <- measure <- report <- jobs <- cli, lab)
# train: train_run's short name; gpus/prediction: a bench's steps predicted on a GPU of the table (Q6, Q9
# without a GPU); reproduction: the notebook's printed figures beside a run's (issue 28)
_EXPORTS = {
    name: module
    for module, names in {
        "mnistlab.core.errors": "MnistlabError ConfigError DataError CheckpointError DivergenceError StorageError "
        "ModelError ResultFileError",
        "mnistlab.core.device": "resolve_device",
        "mnistlab.core.rundir": "RunDir open_run",
        "mnistlab.data.datasets": "DATASETS data_root get_dataset",
        "mnistlab.data.fetching": "fetch",
        "mnistlab.data.loader": "DeviceLoader make_splits read_split split_train_val",
        "mnistlab.training.config": "TrainConfig",
        "mnistlab.training.models": "count_parameters create_model list_models",
        "mnistlab.training.evaluation": "evaluate",
        "mnistlab.jobs.train": "train",
        "mnistlab.measure.profiling": "MACS_VS_FLOPS format_profile profile_model",
        "mnistlab.measure.bench": "run_bench bench_observations format_bench_table",
        "mnistlab.measure.summary": "summarize",
        "mnistlab.report.plots": "plot_runs plot_epoch_times plot_bench plot_samples plot_roofline",
        "mnistlab.measure.gpus": "GPUS gpu",
        "mnistlab.measure.prediction": "predict_on_gpu",
        "mnistlab.report.builder": "build_report",
        "mnistlab.report.runs": "training_observations",
        "mnistlab.report.reproduction": "reproduction",
    }.items()
    for name in names.split()
}
# and every job's public functions (train_run, evaluate_run, the benches, speedrun, run_lab, ...): found in
# mnistlab.jobs, so that a new job needs no line here
_RENAMED = {
    "train": "train_run",
    "bench_observations": "observations",
    "format_bench_table": "format_table",
    "predict_on_gpu": "expectations",
    "reproduction": "reproduction_of",
}

__all__ = sorted([*_EXPORTS, "__version__"])  # and the jobs' (see __dir__)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from mnistlab.core.version import package_version

        return package_version()
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    elif not name.startswith("_") and name in importlib.import_module("mnistlab.jobs").public_names():
        # from its module: a job module may share its function's name (mnistlab.jobs.speedrun.speedrun)
        value = getattr(importlib.import_module(importlib.import_module("mnistlab.jobs").public_names()[name]), name)
    else:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    globals()[name] = value  # cached: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *importlib.import_module("mnistlab.jobs").public_names()})

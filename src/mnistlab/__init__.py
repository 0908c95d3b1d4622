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
_EXPORTS = {
    "MnistlabError": "mnistlab.core.errors",
    "ConfigError": "mnistlab.core.errors",
    "DataError": "mnistlab.core.errors",
    "CheckpointError": "mnistlab.core.errors",
    "DivergenceError": "mnistlab.core.errors",
    "StorageError": "mnistlab.core.errors",
    "resolve_device": "mnistlab.core.device",
    "RunDir": "mnistlab.core.rundir",
    "open_run": "mnistlab.core.rundir",
    "DATASETS": "mnistlab.data.datasets",
    "data_root": "mnistlab.data.datasets",
    "get_dataset": "mnistlab.data.datasets",
    "fetch": "mnistlab.data.fetching",
    "DeviceLoader": "mnistlab.data.loader",
    "make_splits": "mnistlab.data.loader",
    "read_split": "mnistlab.data.loader",
    "split_train_val": "mnistlab.data.loader",
    "TrainConfig": "mnistlab.training.config",
    "count_parameters": "mnistlab.training.models",
    "create_model": "mnistlab.training.models",
    "list_models": "mnistlab.training.models",
    "evaluate": "mnistlab.training.evaluation",
    "train": "mnistlab.jobs.train",  # train_run's short name
    "MACS_VS_FLOPS": "mnistlab.measure.profiling",
    "format_profile": "mnistlab.measure.profiling",
    "profile_model": "mnistlab.measure.profiling",
    "run_bench": "mnistlab.measure.bench",
    "bench_observations": "mnistlab.measure.bench",
    "format_bench_table": "mnistlab.measure.bench",
    "summarize": "mnistlab.measure.summary",
    "plot_runs": "mnistlab.report.plots",
    "plot_epoch_times": "mnistlab.report.plots",
    "plot_bench": "mnistlab.report.plots",
    "plot_samples": "mnistlab.report.plots",
    "plot_roofline": "mnistlab.report.plots",
    # a bench's steps predicted on a GPU of the table (Q6, Q9 without a GPU)
    "GPUS": "mnistlab.measure.gpus",
    "gpu": "mnistlab.measure.gpus",
    "predict_on_gpu": "mnistlab.measure.prediction",
    "build_report": "mnistlab.report.builder",
    "training_observations": "mnistlab.report.runs",
    "reproduction": "mnistlab.report.reproduction",  # the notebook's printed figures beside a run's (issue 28)
    "ModelError": "mnistlab.core.errors",
    "ResultFileError": "mnistlab.core.errors",
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
    elif not name.startswith("_") and name in _jobs().public_names():
        # from its module: a job module may share its function's name (mnistlab.jobs.speedrun.speedrun)
        value = getattr(importlib.import_module(_jobs().public_names()[name]), name)
    else:
        raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")
    globals()[name] = value  # cached: later lookups skip this function
    return value


def _jobs() -> Any:
    return importlib.import_module("mnistlab.jobs")


def __dir__() -> list[str]:
    return sorted({*__all__, *_jobs().public_names()})

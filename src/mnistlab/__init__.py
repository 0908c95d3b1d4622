"""mnistlab: train, time and profile small models on MNIST-family datasets, on CPU and GPU."""

__version__ = "0.1.0"

from mnistlab.config import TrainConfig, resolve_device  # noqa: E402
from mnistlab.datasets import DATASETS, data_root, get_dataset  # noqa: E402
from mnistlab.errors import CheckpointError, ConfigError, DataError, DivergenceError, MnistlabError  # noqa: E402
from mnistlab.evaluation import evaluate  # noqa: E402
from mnistlab.fetching import fetch  # noqa: E402
from mnistlab.loader import DeviceLoader, make_splits  # noqa: E402
from mnistlab.models import count_parameters, create_model, list_models  # noqa: E402
from mnistlab.rundir import RunDir, open_run  # noqa: E402
from mnistlab.runner import train  # noqa: E402
from mnistlab.bench import format_table as format_bench_table  # noqa: E402
from mnistlab.bench import observations as bench_observations  # noqa: E402
from mnistlab.bench import run_bench  # noqa: E402
from mnistlab.lab import run_lab  # noqa: E402
from mnistlab.loader import read_split, split_train_val  # noqa: E402
from mnistlab.plots import plot_runs  # noqa: E402
from mnistlab.profiling import MACS_VS_FLOPS, format_profile, profile_model  # noqa: E402
from mnistlab.report import build_report, training_observations  # noqa: E402
from mnistlab.summary import summarize  # noqa: E402

__all__ = [
    "MACS_VS_FLOPS", "bench_observations", "build_report", "format_bench_table", "format_profile", "plot_runs",
    "profile_model", "read_split", "run_bench", "run_lab", "split_train_val", "summarize", "training_observations",
    "DATASETS", "CheckpointError", "ConfigError", "DataError", "DeviceLoader", "DivergenceError", "MnistlabError",
    "RunDir", "TrainConfig", "count_parameters", "create_model", "data_root", "evaluate", "fetch", "get_dataset",
    "list_models", "make_splits", "open_run", "resolve_device", "train",
]

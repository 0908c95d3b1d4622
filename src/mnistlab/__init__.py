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

__all__ = [
    "DATASETS", "CheckpointError", "ConfigError", "DataError", "DeviceLoader", "DivergenceError", "MnistlabError",
    "RunDir", "TrainConfig", "count_parameters", "create_model", "data_root", "evaluate", "fetch", "get_dataset",
    "list_models", "make_splits", "open_run", "resolve_device", "train",
]

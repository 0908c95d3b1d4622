import pytest
import torch

from mnistlab.core import device as dev
from mnistlab.core.defaults import BUILTIN_MODELS
from mnistlab.core.errors import ConfigError
from mnistlab.training.models import list_models


def test_builtin_names_match_the_registry():
    assert tuple(list_models()[: len(BUILTIN_MODELS)]) == BUILTIN_MODELS


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, False, "cuda"), (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(dev, "has_mps", lambda: mps)
    assert dev.resolve_device("auto") == torch.device(expected)
    assert expected in dev.describe_choice("auto", torch.device(expected))
    assert dev.available_devices() == ["cpu"] + (["cuda"] if cuda else []) + (["mps"] if mps else [])


def test_missing_devices_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "has_mps", lambda: False)
    assert dev.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="MPS is not available"):
        dev.resolve_device("mps")
    with pytest.raises(ConfigError, match="unknown device"):
        dev.resolve_device("tpu")


def test_cpu_name_is_in_the_device_name():
    from mnistlab.core.environment import cpu_name

    assert dev.device_name(torch.device("cpu")).startswith(cpu_name())

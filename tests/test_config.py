import pytest
import torch

from mnistlab.config import TrainConfig, resolve_device
from mnistlab.datasets import DEFAULT_DATA_DIR, data_root, get_dataset
from mnistlab.errors import ConfigError


def test_defaults_are_the_notebooks():
    c = TrainConfig()
    assert (c.model, c.batch_size, c.lr, c.momentum, c.val_fraction) == ("mlp", 64, 0.01, 0.5, 0.2)


@pytest.mark.parametrize("kw, words", [
    ({"model": "vit"}, "unknown model"), ({"dataset": "cifar"}, "unknown dataset"),
    ({"device": "tpu"}, "unknown device"), ({"epochs": 0}, "epochs must be at least 1"),
    ({"epochs": -3}, "epochs must be at least 1"), ({"batch_size": 0}, "batch size must be at least 1"),
    ({"lr": 0}, "learning rate"), ({"lr": float("nan")}, "learning rate"), ({"momentum": 1.0}, "momentum"),
    ({"val_fraction": 0}, "val fraction"), ({"val_fraction": 1.0}, "val fraction"),
    ({"early_stop": 0}, "early stop"), ({"epochs": 2.5}, "whole number"), ({"seed": -1}, "seed"),
])
def test_bad_values_are_config_errors(kw, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kw)


def test_dict_roundtrip_and_unknown_keys():
    c = TrainConfig(model="cnn", epochs=3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown config keys"):
        TrainConfig.from_dict({**c.to_dict(), "optimiser": "adam"})


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    assert data_root(None) == DEFAULT_DATA_DIR
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))
    assert data_root(None) == tmp_path
    assert data_root(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_dataset("svhn")

import pytest

from mnistlab.core.errors import ConfigError
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.training.config import TrainConfig


def test_defaults_are_the_notebooks():
    c = TrainConfig()
    assert (c.model, c.batch_size, c.lr, c.momentum, c.val_fraction) == ("mlp", 64, 0.01, 0.5, 0.2)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"model": "vit"}, "unknown model"),
        ({"dataset": "cifar"}, "unknown dataset"),
        ({"device": "tpu"}, "device must be one of"),
        ({"epochs": 0}, "epochs must be a whole number in 1..100,000"),
        ({"epochs": -3}, "epochs must be a whole number in 1"),
        ({"batch_size": 0}, "batch_size must be a whole number in 1..65,536"),
        ({"lr": 0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"momentum": 1.0}, "momentum must be"),
        ({"val_fraction": 0}, "val_fraction must be"),
        ({"val_fraction": 1.0}, "val_fraction must be"),
        ({"early_stop": 0}, "early_stop must be"),
        ({"epochs": 2.5}, "whole number"),
        ({"seed": -1}, "seed must be"),
        ({"dist_timeout": 10**20}, "dist_timeout must be a whole number in 1..604,800"),
    ],
)
def test_bad_values_are_config_errors(kw, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**kw)


def test_dict_roundtrip_and_unknown_keys():
    c = TrainConfig(model="cnn", epochs=3)
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown field .optimiser."):
        TrainConfig.from_dict({**c.to_dict(), "optimiser": "adam"})


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(None) == tmp_path / "home" / ".cache" / "mnistlab"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # not absolute: ignored, as the XDG spec says
    assert data_root(None) == tmp_path / "home" / ".cache" / "mnistlab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(None) == tmp_path / "xdg" / "mnistlab"
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path))  # $MNISTLAB_DATA wins over XDG
    assert data_root(None) == tmp_path
    assert data_root(tmp_path / "x") == tmp_path / "x"  # and --data-dir over both
    with pytest.raises(ConfigError, match="unknown dataset"):
        get_dataset("svhn")


def test_every_field_has_help_for_its_option():
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


def test_the_command_line_finds_the_data_under_xdg_cache_home(tmp_path, monkeypatch, capsys):
    from mnistlab.cli import main
    from mnistlab.data import datasets
    from tests.conftest import write_tiny_dataset

    spec = write_tiny_dataset(tmp_path / "xdg" / "mnistlab")
    monkeypatch.setitem(datasets.DATASETS, "tiny", spec)
    monkeypatch.delenv("MNISTLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert main(["data", "fetch", "--dataset", "tiny", "--no-web"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "xdg" / "mnistlab" / "TINY" / "raw")

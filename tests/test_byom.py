"""Your own model: specs accepted wherever a model name is, one clear line for each way a spec can
be wrong, and a file spec's run that records, verifies and reuses the exact code it trained with."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from mnistlab.cli import main
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import open_run
from mnistlab.data.datasets import DataShape
from mnistlab.jobs.train import train_run
from mnistlab.report.builder import build_report
from mnistlab.report.document import md_escape
from mnistlab.training.config import TrainConfig
from mnistlab.training.models import count_parameters, create_model
from tests.conftest import tiny_bench_argv
from tests.tbcheck import assert_events_match_run

NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(28 * 28, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


def make():
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
"""
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lenet5.py"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- building models from specs --------------------------------------------------------------


def test_file_and_module_specs_build_models(tmp_path, monkeypatch):
    net = write(tmp_path / "m", "net.py", NET)
    assert create_model(f"{net}:Net")(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert create_model(f"{net}:Net", DataShape((1, 28, 28), 26))(torch.zeros(3, 1, 28, 28)).shape == (
        3,
        26,
    )  # num_classes=
    assert count_parameters(create_model(f"{net}:make")) == 7850  # a function, called with no arguments
    write(tmp_path / "pkg" / "mypkg", "__init__.py", "")
    write(tmp_path / "pkg" / "mypkg", "nets.py", NET)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    assert create_model("mypkg.nets:Net", DataShape((1, 28, 28), 5))(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert TrainConfig(model="mypkg.nets:Net").model == "mypkg.nets:Net"  # the spec is kept as given


def test_lenet5_example_everywhere(capsys, tmp_path):
    spec = f"{EXAMPLE}:LeNet5"
    assert count_parameters(create_model(spec)) == 61_706
    assert main(["summary", spec]) == 0 and "output shape for input [1, 1, 28, 28]: [1, 10]" in capsys.readouterr().out
    assert main(["profile", spec, "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)[0]
    assert profile["model"] == spec and profile["parameters"] == 61_706
    assert profile["macs"] == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10


def test_a_built_model_is_not_changed_by_the_check_nor_by_draws_at_import(tmp_path):
    draws = write(tmp_path, "draws.py", "import torch\nNOISE = torch.randn(100)\n" + NET)
    torch.manual_seed(0)
    first = create_model(f"{draws}:Net")  # runs the file: its randn must not shift the weights
    torch.manual_seed(0)
    second = create_model(f"{draws}:Net")  # the same bytes: not run again
    torch.manual_seed(0)
    plain = create_model(f"{write(tmp_path, 'plain.py', NET)}:Net")
    assert torch.equal(first.fc.weight, second.fc.weight) and torch.equal(first.fc.weight, plain.fc.weight)
    assert first.training  # the shape check ran in eval mode and put it back


BAD = {
    "syntax.py": ("def broken(:\n", "SyntaxError"),
    "imports.py": ("import no_such_package_xyz\n", "ModuleNotFoundError: No module named 'no_such_package_xyz'"),
    "raises.py": ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
    "value.py": ("Net = 3\n", "Net is not a class or function (it is of type int)"),
    "instance.py": (NET + "Net = Net()\n", "Net is an nn.Module instance, not a factory"),
    "returns.py": ("def Net():\n    return 3\n", "Net returned int, not an nn.Module"),
    "plain.py": ("class Net:\n    pass\n", "Net returned Net, not an nn.Module"),
    "needs.py": (
        "from torch import nn\ndef Net(width):\n    return nn.Linear(784, width)\n",
        "requires the arguments width",
    ),
    "shape.py": (
        "from torch import nn\ndef Net():\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))\n",
        "its output on a (2, 1, 28, 28) batch is (2, 7), expected (2, 10)",
    ),
    "forward.py": (
        "from torch import nn\ndef Net():\n    return nn.Linear(10, 10)\n",
        "the forward pass on a (2, 1, 28, 28) batch failed (RuntimeError: mat1 and mat2",
    ),
    "tuple.py": (
        "from torch import nn\nclass Net(nn.Linear):\n    def __init__(self):\n        super().__init__(784, 10)\n"
        "    def forward(self, x):\n        return (super().forward(x.flatten(1)),)\n",
        "its output on a (2, 1, 28, 28) batch is tuple",
    ),
    "noparams.py": (
        "from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return x.flatten(1)[:, :10]\n",
        "the model has no parameters",
    ),
    "fails.py": ("def Net():\n    raise ValueError('bad width')\n", "Net() failed (ValueError: bad width)"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_bad_model_file_is_one_clear_line(tmp_path, capsys, name):
    text, message = BAD[name]
    err = one_line_error(capsys, ["summary", f"{write(tmp_path, name, text)}:Net"])
    assert message in err


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nowhere/net.py:Net", "nowhere/net.py: no such file"),
        ("NETFILE:Nope", "has no name 'Nope' (its nn.Module classes: Net)"),
        (
            "no_such_pkg_xyz.models:Net",
            "cannot import 'no_such_pkg_xyz.models' (ModuleNotFoundError: "
            "No module named 'no_such_pkg_xyz'); is it installed or on PYTHONPATH?",
        ),
        ("json:loads", "json is part of the standard library; a model spec must name a class or function of your own"),
        ("resnet", "unknown model 'resnet'; choose one of: mlp, cnn, speednet, or give package.module:factory"),
        ("models/net:Net", "is neither a module name (package.module) nor a .py file path"),
        ("net.py:9lives", "'9lives' after the last ':' is not a Python name"),
    ],
)
def test_each_bad_spec_is_one_clear_line(tmp_path, capsys, spec, message):
    spec = spec.replace("NETFILE", str(write(tmp_path, "net.py", NET)))
    for argv in (["summary", spec], ["profile", spec], ["train", "--model", spec, "--run-dir", str(tmp_path / "r")]):
        assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "r").exists()  # train fails before a run directory exists


@pytest.mark.slow
def test_bench_times_a_file_spec(tiny, tmp_path, capsys):
    spec = f"{write(tmp_path / 'm', 'net.py', NET)}:Net"
    assert main(tiny_bench_argv(spec, tmp_path / "b")) == 0
    cells = json.loads((tmp_path / "b" / "bench.json").read_text())["cells"]
    assert [c["model"] for c in cells] == [spec] and cells[0]["train_step_flops"] > 0


# --- a run of a file spec ---------------------------------------------------------------------


@pytest.mark.slow
def test_file_spec_run_records_its_code_and_is_usable_later(tiny, tmp_path, monkeypatch, capsys):
    src = write(tmp_path / "work" / "models", "net.py", NET)
    monkeypatch.chdir(tmp_path / "work")
    spec, run = "models/net.py:Net", tmp_path / "r"  # relative: the record keeps the absolute path
    assert (
        main(
            [
                "train",
                "--model",
                spec,
                "--dataset",
                "tiny",
                "--epochs",
                "1",
                "--device",
                "cpu",
                "--no-progress",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    assert json.loads((run / "config.json").read_text())["model"] == spec
    record = json.loads((run / "model.json").read_text())
    assert record == {
        "spec": spec,
        "kind": "file",
        "path": str(src.resolve()),
        "copy": "model_source.py",
        "named": str(src.absolute()),
        "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
    }
    assert (run / "model_source.py").read_bytes() == src.read_bytes()

    monkeypatch.chdir(tmp_path)  # elsewhere: the relative spec no longer points at the file
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epoch"] == 1
    train_run(resume=run, overrides={"epochs": 1}, log=lambda m: None, progress=False)  # no CLI: no plot
    assert_events_match_run(run)

    original = src.read_bytes()
    src.write_bytes(original + b"\n# edited\n")  # the user changed their model: resume refuses
    err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "1", "--no-progress"])
    assert f"{src.resolve()}: changed since this run started" in err
    assert main(["eval", str(run), "--device", "cpu", "--json"]) == 0  # eval runs the run's own copy
    src.unlink()  # gone (or the run moved to another machine): the run's copy is enough
    train_run(resume=run, overrides={"epochs": 1}, log=lambda m: None, progress=False)
    assert [r["epoch"] for r in open_run(run).metrics()] == [1, 2, 3]
    md, _ = build_report([run], tmp_path / "rep")
    assert f"| {md_escape(spec, block_start=False)} | 7,850 | 7,850 |" in md.read_text()  # the models' table


def test_a_changed_copy_is_refused_and_never_run(tiny, tmp_path, capsys):
    spec = f"{write(tmp_path / 'm', 'net.py', NET)}:Net"
    run = train_run(
        TrainConfig(model=spec, dataset="tiny", epochs=1, device="cpu"),
        run_dir=tmp_path / "r",
        log=lambda m: None,
        progress=False,
        tensorboard=False,
    )
    marker = tmp_path / "ran"
    (run / "model_source.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + NET)
    for argv in (["eval", str(run.path)], ["train", "--resume", str(run.path), "--epochs", "1", "--no-progress"]):
        assert "does not match the SHA-256 in model.json" in one_line_error(capsys, argv)
    (run / "model.json").write_text('{"spec": "other.py:Net"}')
    assert "model.json: missing the field" in one_line_error(capsys, ["eval", str(run.path)])
    (run / "model.json").unlink()  # weights without the record of their code: never guessed from the spec
    assert "has no model.json" in one_line_error(capsys, ["eval", str(run.path)])
    assert not marker.exists()


def test_default_run_name_uses_the_factory_name(tiny, tmp_path):
    spec = f"{write(tmp_path / 'm', 'net.py', NET)}:make"
    run = train_run(
        TrainConfig(model=spec, dataset="tiny", epochs=1, device="cpu", max_steps=2),
        runs_base=tmp_path / "runs",
        log=lambda m: None,
        progress=False,
        tensorboard=False,
    )
    assert run.path.parent == tmp_path / "runs" and run.name.startswith("make-tiny-")


def test_config_rejects_a_malformed_spec_without_importing_anything():
    with pytest.raises(ConfigError, match="not a Python name"):
        TrainConfig(model="no_such_pkg_xyz.models:1x")
    assert TrainConfig(model="no_such_pkg_xyz.models:Net").model  # the form is fine; importing comes later

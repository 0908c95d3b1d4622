"""Checkpoints that are truncated, from another model, or built to run code when unpickled."""

from __future__ import annotations

import contextlib
import io
import pickle
import shutil

import pytest
import torch

from mnistlab.cli import main


@pytest.fixture(scope="module")
def trained(tiny_module):
    """One 1-epoch run for the module; each test alters a copy of it."""
    path = tiny_module[1].parent / "mlp"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(path)]) == 0
    return path


@pytest.fixture
def run(trained, tiny, tmp_path):
    shutil.copytree(trained, tmp_path / "mlp")
    return tmp_path / "mlp"


def attempt(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("keep", [0, 100, 5000, -10])
def test_truncated_checkpoint(run, capsys, reliability, keep):
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(data[:keep] if keep >= 0 else data[:keep])
    for argv in (["eval", str(run)], ["train", "--resume", str(run), "--epochs", "1", "--no-progress"]):
        assert "not a readable checkpoint (truncated or corrupt)" in attempt(capsys, *argv)
    reliability.record(
        "Checkpoints",
        "truncated `.pt` (0, 100, 5000 bytes, all but 10)",
        "clear error (exit 2, one line), for eval and resume",
        trials=2,
    )


def test_checkpoint_from_another_model(run, tiny, tmp_path, capsys, reliability):
    cnn = tmp_path / "cnn"
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--model",
                "cnn",
                "--epochs",
                "1",
                "--subset",
                "64",
                "--no-progress",
                "--run-dir",
                str(cnn),
            ]
        )
        == 0
    )
    capsys.readouterr()
    shutil.copy(cnn / "last.pt", run / "last.pt")
    assert "was written by model 'cnn', the run is 'mlp'" in attempt(
        capsys, "train", "--resume", str(run), "--epochs", "1", "--no-progress"
    )
    assert "does not fit this model" in attempt(capsys, "eval", str(run))
    reliability.record(
        "Checkpoints", "a `.pt` from another model", "clear error (exit 2, one line), for eval and resume", trials=2
    )


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a malicious checkpoint does: call a function while being unpickled
        return (open, (str(self.marker), "w"))


def test_pickle_that_would_run_code_is_refused(run, tmp_path, capsys, reliability):
    marker = tmp_path / "code-ran"
    state = torch.load(run / "last.pt", weights_only=True)
    state["payload"] = _RunsCode(marker)
    with open(run / "last.pt", "wb") as f:
        torch.save(state, f, pickle_module=pickle)
    for argv in (["eval", str(run)], ["train", "--resume", str(run), "--epochs", "1", "--no-progress"]):
        assert "refused" in attempt(capsys, *argv)
    assert not marker.exists()
    reliability.record(
        "Checkpoints",
        "a pickle that would run code when loaded",
        "refused (weights_only), clear error; the code never ran",
        trials=2,
    )

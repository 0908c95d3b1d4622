"""Checkpoints that pass weights_only=True but hold the wrong things: every field is validated before
use, and each mismatch is one line naming the file and the field (eval and --resume), never a crash.
One run is trained per module; each test alters a copy of it. In-process, except the crash case."""

from __future__ import annotations

import shutil

import pytest
import torch

from mnistlab.cli import main
from mnistlab.data import datasets
from tests.conftest import write_tiny_dataset

from .conftest import is_one_line_error, mnistlab, one_line_error

RESUME = ["train", "--resume", "{run}", "--epochs", "1", "--no-progress"]
EVAL = ["eval", "{run}", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("checkpoints")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "tiny", write_tiny_dataset(base / "data"))
        mp.setenv("MNISTLAB_DATA", str(base / "data"))
        argv = ["train", "--dataset", "tiny", "--epochs", "2", "--no-progress", "--run-dir", str(base / "run")]
        assert main(argv) == 0
    return base / "run"


@pytest.fixture
def run(trained, tiny, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def _alter(run, change) -> bytes:
    state = torch.load(run / "last.pt", weights_only=True)
    change(state)
    torch.save(state, run / "last.pt")
    return (run / "last.pt").read_bytes()


def _set(path: str, value):
    def change(state):
        *parents, last = path.split("/")
        target = state
        for p in parents:
            target = target[int(p) if p.isdigit() else p]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        else:
            target[int(last) if last.isdigit() else last] = (
                value(target[int(last) if last.isdigit() else last]) if callable(value) else value
            )

    return change


_DELETE = object()
BOTH, RESUME_ONLY = ("eval", "resume"), ("resume",)

# case -> (change, words the line must hold, commands that must refuse it)
CASES = {
    "a weight of the wrong dtype (float64)": (_set("model/fc1.weight", lambda t: t.double()), "model.fc1.weight", BOTH),
    "a weight missing": (_set("model/fc1.bias", _DELETE), "does not fit this model", BOTH),
    "NaN weights": (_set("model/fc1.weight", lambda t: t.fill_(float("nan"))), "NaN or infinite", BOTH),
    "infinite weights": (_set("model/fc2.bias", lambda t: t.fill_(float("inf"))), "NaN or infinite", BOTH),
    "no `optimizer`": (_set("optimizer", _DELETE), "missing the field 'optimizer'", BOTH),
    "no `rng_cpu`": (_set("rng_cpu", _DELETE), "missing the field 'rng_cpu'", BOTH),
    "no `history`": (_set("history", _DELETE), "missing the field 'history'", BOTH),
    "`history` as text": (_set("history", "lots"), "field 'history'", BOTH),
    "a `history` value as text": (_set("history/0/train_loss", "low"), "'history'[0].train_loss", BOTH),
    "`epoch` as text": (_set("epoch", "2"), "field 'epoch'", BOTH),
    "`epoch` beyond its history": (_set("epoch", 7), "field 'epoch'", BOTH),
    "`global_step` not its history's": (_set("global_step", 10**12), "field 'global_step'", BOTH),
    "`best_epoch` negative": (_set("best_epoch", -1), "field 'best_epoch'", BOTH),
    "`rng_cpu` of the wrong size": (_set("rng_cpu", lambda t: t[:100]), "field 'rng_cpu'", BOTH),
    "`step_log` rows that are not numbers": (_set("step_log", [{"step": "a"}]), "field 'step_log'", BOTH),
    "`config` with a boolean as a number": (_set("config/subset", True), "field 'config'", BOTH),
    "`optimizer` as a list": (_set("optimizer", [1, 2]), "field 'optimizer'", BOTH),
    "a momentum buffer of the wrong dtype": (
        _set("optimizer/state/0/momentum_buffer", lambda t: t.double()),
        "optimizer.state[0].momentum_buffer",
        RESUME_ONLY,
    ),
    "a NaN momentum buffer": (
        _set("optimizer/state/1/momentum_buffer", lambda t: t.fill_(float("nan"))),
        "NaN or infinite",
        RESUME_ONLY,
    ),
    "a NaN learning rate": (_set("optimizer/param_groups/0/lr", float("nan")), "param_groups[0].lr", RESUME_ONLY),
    "parameter ids out of range": (
        _set("optimizer/param_groups/0/params", lambda p: [i + 100 for i in p]),
        "field 'optimizer.param_groups'",
        RESUME_ONLY,
    ),
    "state for a parameter the model lacks": (
        _set("optimizer/state/99", {"momentum_buffer": torch.zeros(3)}),
        "optimizer.state[99]",
        RESUME_ONLY,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_altered_checkpoint(run, capsys, reliability, case):
    change, words, commands = CASES[case]
    altered = _alter(run, change)
    for command in commands:
        argv = [a.format(run=run) for a in (EVAL if command == "eval" else RESUME)]
        line = one_line_error(capsys, argv)
        assert words in line and str(run / "last.pt") in line, (command, line)
        assert (run / "last.pt").read_bytes() == altered  # refused before anything was written
    reliability.record(
        "Checkpoints (validated before use)",
        f"last.pt with {case}",
        f"clear error naming the file and field ({' and '.join(commands)})",
        trials=len(commands),
    )


def test_wrong_shape_momentum_buffer_does_not_crash(trained, tiny_env, reliability):
    """The case that made fused SGD read out of bounds (segfault or hang): its own process."""
    run = tiny_env["tmp"] / "run"
    shutil.copytree(trained, run)
    _alter(run, _set("optimizer/state/0/momentum_buffer", lambda t: torch.zeros(3)))
    p = mnistlab(
        ["train", "--resume", str(run), "--epochs", "1", "--no-progress", "--device", "cpu"],
        tiny_env["env"],
        timeout=120,
    )
    assert is_one_line_error(p) and "optimizer.state[0].momentum_buffer" in p.stderr, (p.returncode, p.stderr[-800:])
    reliability.record(
        "Checkpoints (validated before use)",
        "last.pt with a momentum buffer of the wrong shape (fused SGD read out of bounds)",
        "clear error naming the file and field (resume); no crash",
    )

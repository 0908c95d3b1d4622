"""One lifecycle: whatever ends a training job, its status.json says how, and the user reads one line.

Property-style: hypothesis picks what goes wrong (a user's model that fails only once it trains, a
signal, memory) and when (which call, in training or in evaluation); every time, the command exits
with one line and the code core.failures gives it, and a run directory that exists holds a final state.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistlab import cli
from mnistlab.core.failures import FINAL_STATES, outcome
from mnistlab.core.rundir import read_json_object
from mnistlab.core.stopping import Terminated
from mnistlab.jobs.train import train_run

# what the model does when it fails; the exit code and state the user must get
FAILURES = {
    "index": (2, "failed"),  # an IndexError in the user's forward
    "int-logits": (2, "failed"),  # logits of an integer dtype
    "batch-dependent": (2, "failed"),  # an output whose batch size is not the input's
    "wrong-shape": (2, "failed"),  # (B, 7) logits only from this call on
    "memory": (2, "failed"),  # the CPU allocator gives up
    "ctrl-c": (130, "interrupted"),
    "sigterm": (143, "terminated"),
}

MODEL = """
import os, signal
import torch
from torch import nn

KIND, AT, MODE = {kind!r}, {at}, {mode!r}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.training != (MODE == "train") or len(x) == 2:  # batch 2: mnistlab's build check, not training
            return out
        self.calls += 1
        if self.calls < AT:
            return out
        if KIND == "index":
            return out[:, [10]]
        if KIND == "int-logits":
            return out.long()
        if KIND == "batch-dependent":
            return out[: max(1, len(x) // 2)]
        if KIND == "wrong-shape":
            return out[:, :7]
        if KIND == "memory":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                               "allocate memory: you tried to allocate 40000000000000 bytes.")
        if KIND == "ctrl-c":
            raise KeyboardInterrupt
        if KIND == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        return out
"""


def _train(model: str, run_dir: Path, *extra: str) -> int:
    return cli.main(
        [
            "train",
            "--model",
            model,
            "--dataset",
            "tiny",
            "--epochs",
            "2",
            "--subset",
            "128",
            "--device",
            "cpu",
            "--run-dir",
            str(run_dir),
            "--no-progress",
            "--no-tensorboard",
            *extra,
        ]
    )


def _one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("mnistlab:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(FAILURES)), at=st.integers(1, 5), mode=st.sampled_from(["train", "eval"]))
@pytest.mark.slow
def test_every_way_a_run_ends_is_recorded(tiny, capsys, kind, at, mode):
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        src = Path(tmp) / "net.py"
        src.write_text(MODEL.format(kind=kind, at=at, mode=mode))
        run_dir = Path(tmp) / "run"
        code = _train(f"{src}:Net", run_dir)
        err = capsys.readouterr().err
        status = read_json_object(run_dir / "status.json")
    if at > 1 and (code, status["state"]) == (0, "completed"):  # a short run may end before call `at`
        return
    want_code, want_state = FAILURES[kind]
    assert (code, status["state"]) == (want_code, want_state), err
    assert status["state"] in FINAL_STATES
    line = _one_line(err)
    if kind in ("index", "int-logits", "batch-dependent", "wrong-shape"):
        assert f"model {src}:Net failed during" in line
    if kind == "memory":
        assert "out of memory on cpu" in line
    if want_state == "failed":
        assert status["message"] and "\n" not in status["message"]


def test_a_bug_in_mnistlab_keeps_its_traceback_but_the_status_is_final(tiny, tmp_path, monkeypatch):
    from mnistlab.training import runner
    from mnistlab.training.config import TrainConfig

    def broken(*args, **kwargs):
        raise IndexError("a bug of ours")

    monkeypatch.setattr(runner, "evaluate", broken)
    with pytest.raises(IndexError):
        train_run(
            TrainConfig(dataset="tiny", epochs=1, subset=128, device="cpu"),
            run_dir=tmp_path / "r",
            log=lambda m: None,
            progress=False,
            tensorboard=False,
        )
    status = read_json_object(tmp_path / "r" / "status.json")
    assert status["state"] == "failed" and "IndexError: a bug of ours" in status["message"]


@pytest.mark.slow
def test_a_failing_compiler_ends_the_run_as_failed_in_one_line(tiny, tmp_path):
    """A real compiler that fails (CXX=/bin/false): torch.compile breaks at the first step."""
    env = {
        **os.environ,
        "CXX": "/bin/false",
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
        "MNISTLAB_DATASETS_FILE": "",
    }
    script = (
        "import sys; from mnistlab.data import datasets; from tests.conftest import write_tiny_dataset;"
        "from pathlib import Path; datasets.DATASETS['tiny'] = write_tiny_dataset(Path(sys.argv[1]));"
        "from mnistlab import cli; sys.exit(cli.main(sys.argv[2:]))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "data"),
            "train",
            "--dataset",
            "tiny",
            "--data-dir",
            str(tmp_path / "data"),
            "--epochs",
            "1",
            "--subset",
            "128",
            "--device",
            "cpu",
            "--compile",
            "default",
            "--run-dir",
            str(tmp_path / "r"),
            "--no-progress",
            "--no-tensorboard",
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=300,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    line = _one_line(out.stderr)
    assert "--compile default" in line
    status = read_json_object(tmp_path / "r" / "status.json")
    assert status["state"] == "failed" and "--compile" in status["message"]


@pytest.mark.parametrize(
    "error, state, code",
    [
        (Terminated(), "terminated", 143),
        (KeyboardInterrupt(), "interrupted", 130),
        (MemoryError(), "failed", 2),
        (FileNotFoundError(2, "No such file or directory", "x.csv"), "failed", 2),
        (ValueError("a bug"), "failed", 1),
    ],
)
def test_one_mapping_from_exception_to_state_line_and_exit_code(error, state, code):
    end = outcome(error)
    assert (end.state, end.exit_code) == (state, code)
    assert (end.line is None) == (code == 1)


def test_cpu_out_of_memory_is_the_out_of_memory_line():
    import torch

    with pytest.raises(RuntimeError) as info:
        torch.empty(10**13)  # the CPU allocator's own refusal, not a stand-in
    end = outcome(info.value)
    assert (end.state, end.exit_code) == ("failed", 2) and end.line.startswith(
        "out of memory on cpu (tried to allocate"
    )


def test_a_batch_too_large_for_memory_is_refused_before_it_is_tried(capsys):
    for argv in (
        ["profile", "mlp", "--batch-size", "100000000000"],
        ["summary", "mlp", "--batch-size", "100000000000"],
    ):
        with pytest.raises(SystemExit) as info:  # argparse's refusal: before any tensor is made
            cli.main(argv)
        assert info.value.code == 2 and "must be at most 65536" in _one_line(capsys.readouterr().err)


JOB_ARGV = {
    "bench": ["bench", "--pipelines", "resident"],
    "bench --implementations": ["bench", "--implementations", "eager"],
}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    job=st.sampled_from(sorted(JOB_ARGV)),
    kind=st.sampled_from(["index", "wrong-shape", "ctrl-c", "sigterm"]),
    at=st.integers(1, 3),
)
@pytest.mark.slow
def test_every_job_folder_ends_in_a_final_state(tiny, capsys, job, kind, at):
    """bench and the levers bench (and lab, speedrun, scaling: the same job_folder) record how they ended."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        src = Path(tmp) / "net.py"
        src.write_text(MODEL.format(kind=kind, at=at, mode="train"))
        out = Path(tmp) / "out"
        code = cli.main(
            [
                *JOB_ARGV[job],
                "--models",
                f"{src}:Net",
                "--dataset",
                "tiny",
                "--devices",
                "cpu",
                "--steps",
                "2",
                "--repeats",
                "1",
                "--warmup",
                "1",
                "--out",
                str(out),
            ]
        )
        err = capsys.readouterr().err
        status = read_json_object(out / "status.json")
    want_code, want_state = FAILURES[kind]
    assert (code, status["state"]) == (want_code, want_state), err
    assert status["job"] == job
    line = _one_line(err)
    if want_state == "failed":
        assert f"model {src}:Net failed" in line and status["message"] == line.removeprefix("mnistlab: error: ")


@pytest.mark.slow
def test_a_model_that_fails_in_a_data_parallel_process_is_one_line(tiny, tmp_path, capsys):
    src = tmp_path / "net.py"
    src.write_text(MODEL.format(kind="index", at=1, mode="train"))
    code = cli.main(
        [
            "bench",
            "--nproc",
            "2",
            "--models",
            f"{src}:Net",
            "--dataset",
            "tiny",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and f"model {src}:Net failed in a data-parallel process: IndexError" in line
    assert read_json_object(tmp_path / "out" / "status.json")["state"] == "failed"

"""One exit door: whatever ends a command (sys.exit in a user's model, a model that fails only at some batch, a
SIGTERM or Ctrl-C at any point from a job's first write to its last) passes through core.failures: one line, and
an exit code that agrees with the final state its folder records. `eval --json` prints strict JSON."""

from __future__ import annotations

import json

import pytest

from mnistlab.core.rundir import open_run
from tests.conftest import tiny_bench_argv, tiny_sweep_argv

from .conftest import mnistlab, one_line_error

# a model that misbehaves when MISBEHAVE says how: sys.exit(N) ("exit:N") after CALLS forward passes, or, at a
# batch other than its build check's 2: no output ("none"), 5 logits ("classes"), one row ("rows"), inf ("inf")
NET = """import os, sys
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        how = os.environ.get("MISBEHAVE", "")
        out = self.fc(x)
        if how.startswith("exit:") and self.calls > int(os.environ.get("CALLS", "0")):
            code = how.split(":", 1)[1]
            sys.exit(int(code) if code.isdigit() else code)
        if x.shape[0] == 2 or not how:
            return out
        return {"none": None, "classes": out[:, :5], "rows": out[:1], "inf": out * float("inf")}.get(how, out)
"""
TRAIN = ["train", "--dataset", "tiny", "--epochs", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture
def net(tiny, tmp_path, monkeypatch):
    (tmp_path / "net.py").write_text(NET)
    monkeypatch.delenv("MISBEHAVE", raising=False)
    return f"{tmp_path / 'net.py'}:Net"


@pytest.fixture
def trained(net, tmp_path, capsys):
    from mnistlab.cli import main

    assert main([*TRAIN, "--model", net, "--run-dir", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    return tmp_path / "r"


# --- sys.exit in a user's model ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("code", ["0", "3", "bye"])
def test_sys_exit_in_a_model_is_a_failure_everywhere(net, trained, tmp_path, capsys, monkeypatch, reliability, code):
    pytest.importorskip("optuna")
    monkeypatch.setenv("MISBEHAVE", f"exit:{code}")
    shown = repr(int(code) if code.isdigit() else code)
    monkeypatch.setenv("CALLS", "3")  # past the build check: inside the command's own work
    cases = {
        "train": [*TRAIN, "--model", net, "--run-dir", str(tmp_path / "t")],
        "profile --json": ["profile", net, "--json"],
        "summary": ["summary", net, "--batch-size", "3"],
        "bench": tiny_bench_argv(net, tmp_path / "b"),
        "sweep": tiny_sweep_argv("--model", net, "--out", str(tmp_path / "sw"), trials=2),
    }
    for name, argv in cases.items():
        monkeypatch.setenv("CALLS", "1" if name in ("profile --json", "summary") else "3")
        line = one_line_error(capsys, argv)
        assert f"sys.exit({shown})" in line, (name, line)
    monkeypatch.setenv("CALLS", "1")
    for argv in (["eval", str(trained), "--json"], ["eval", str(trained)]):
        line = one_line_error(capsys, argv)
        assert f"sys.exit({shown})" in line and "failed during the test evaluation" in line, line
    assert open_run(tmp_path / "t").status()["state"] == "failed"
    for folder in ("b", "sw"):
        assert json.loads((tmp_path / folder / "status.json").read_text())["state"] == "failed"
    trials = json.loads((tmp_path / "sw" / "trials.json").read_text())
    assert [t["state"] for t in trials] == ["fail"]
    reliability.record(
        "One exit door",
        f"`sys.exit({shown})` in a user's model: train, eval, eval --json, profile --json, summary, bench, sweep",
        "clear error (exit 2, one line naming sys.exit); every folder "
        "it started records `failed`; a sweep's trial `fail`",
        trials=7,
    )


@pytest.mark.parametrize("how, words", [("none", "NoneType"), ("classes", "5"), ("rows", "1")])
def test_a_model_that_fails_at_another_batch_is_one_line_in_eval_and_summary(
    net, trained, capsys, monkeypatch, reliability, how, words
):
    monkeypatch.setenv("MISBEHAVE", how)
    for argv in (["eval", str(trained)], ["eval", str(trained), "--json"], ["summary", net, "--batch-size", "3"]):
        line = one_line_error(capsys, argv)
        assert "net.py:Net" in line and words in line, line
    returns = {"none": "None", "classes": "5 logits", "rows": "one row"}[how]
    reliability.record(
        "One exit door",
        f"a model that returns {returns} at a batch other than its build check's (eval, eval --json, summary)",
        "clear error naming the model (exit 2, one line), as train gives",
        trials=3,
    )


def test_eval_json_is_strict_json_even_for_an_infinite_loss(trained, capsys, monkeypatch, reliability):
    from mnistlab.cli import main

    monkeypatch.setenv("MISBEHAVE", "inf")
    assert main(["eval", str(trained), "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    result = json.loads(out, parse_constant=refuse)
    assert result["loss"] is None and 0 <= result["accuracy"] <= 1
    reliability.record(
        "One exit door",
        "`eval --json` of a model whose loss is infinite or NaN",
        "strict JSON: the value is null, never `NaN`",
    )


# --- SIGTERM and Ctrl-C from a job's first write to its last --------------------------------------

# named moments (core/faults.py) from the first write (status.json `running`) to the last, and after it
POINTS = [
    "write:status.json:1",
    "write:config.json",
    "write:env.json",
    "write:metrics.csv:1",
    "write:steps.csv:1",
    "evaluate:1",
    "write:last.pt:1",
    "write:test.json",
    "write:loss.png",
    "job-end",
    "command-done",
]
ENDS = {"TERM": ("terminated", 143), "INT": ("interrupted", 130)}


@pytest.mark.slow
@pytest.mark.parametrize("sig", list(ENDS))
@pytest.mark.parametrize("point", POINTS)
def test_a_stop_at_any_point_ends_in_a_state_that_agrees_with_the_exit_code(tiny_env, reliability, point, sig):
    env, run = tiny_env["env"], tiny_env["tmp"] / "r"
    p = mnistlab([*TRAIN, "--run-dir", str(run)], env, kill_at=point, kill_signal=sig)
    state, code = ENDS[sig]
    status = json.loads((run / "status.json").read_text())  # before config.json exists too
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:  # the stop came after the job had recorded how it ended: it changes nothing
        assert point in ("job-end", "command-done") and status["state"] == "completed", (p.stderr, status)
        assert "came after the job had recorded how it ended" in p.stderr and str(run) in p.stdout
    else:
        assert p.returncode == code and status["state"] == state, (p.returncode, status, p.stderr[-600:])
        assert p.stderr.strip().splitlines()[-1] == f"mnistlab: {state}", p.stderr[-600:]
        again = ["--resume", str(run)] if (run / "config.json").exists() else [*TRAIN[1:], "--run-dir", str(run)]
        done = mnistlab(["train", *again, "--no-progress"], env)  # stopped before config.json: started again
        assert done.returncode == 0, done.stderr[-600:]
    final = open_run(run)
    assert final.status()["state"] == "completed" and final.test() is not None and (run / "loss.png").is_file()
    reliability.record(
        "One exit door: stopped at any point, then resumed",
        f"SIG{sig} at `{point}`",
        f"state `{state}` and exit {code} (or, once the job has recorded `completed`, exit 0 with a "
        f"line); a resume (or, before config.json, the same command) completes the run",
    )


# a stop while config.json is written leaves the old one (1 epoch: the stopped command's request is gone); once it
# is written (3 epochs), a plain --resume trains what it says
@pytest.mark.slow
@pytest.mark.parametrize("point, epochs", [("write:config.json", 1), ("write:env.json", 3)])
def test_a_resume_stopped_while_it_writes_its_config_is_not_completed(tiny_env, reliability, point, epochs):
    env, run = tiny_env["env"], tiny_env["tmp"] / "r"
    assert mnistlab([*TRAIN, "--run-dir", str(run)], env).returncode == 0
    p = mnistlab(
        ["train", "--resume", str(run), "--epochs", "2", "--no-progress"], env, kill_at=point, kill_signal="TERM"
    )
    assert p.returncode == 143 and open_run(run).status()["state"] == "terminated", p.stderr[-600:]
    p = mnistlab(["train", "--resume", str(run), "--no-progress"], env)
    assert p.returncode == 0 and len(open_run(run).metrics()) == epochs, p.stderr[-600:]
    assert open_run(run).status()["state"] == "completed"
    reliability.record(
        "One exit door: stopped at any point, then resumed",
        f"SIGTERM while a resume of a completed run (`--epochs 2`) writes `{point.split(':')[1]}`",
        "state `terminated`, exit 143 (not `completed`); a plain --resume trains what config.json then says",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, point",
    [
        (["eval", "{run}"], "evaluate"),
        (["data", "fetch", "--dataset", "tiny"], "fetch"),
        (["report", "{run}", "--out", "{tmp}/rep"], "write:report.md"),
        (["plot", "{run}", "--out", "{tmp}/p.png"], "write:p.png"),
    ],
)
def test_readers_stop_on_sigterm_with_one_line(tiny_env, reliability, argv, point):
    env, tmp = tiny_env["env"], tiny_env["tmp"]
    run = tmp / "r"
    assert mnistlab([*TRAIN, "--run-dir", str(run)], env).returncode == 0
    args = [a.format(run=run, tmp=tmp) for a in argv]
    p = mnistlab(args, env, kill_at=point, kill_signal="TERM")
    assert p.returncode == 143 and p.stderr.strip().splitlines()[-1] == "mnistlab: terminated", p.stderr[-600:]
    assert "Traceback" not in p.stderr and not list(tmp.rglob(".*.tmp"))
    reliability.record(
        "One exit door",
        f"SIGTERM during `{argv[0]}{' ' + argv[1] if argv[0] == 'data' else ''}`",
        "exit 143 with the line `mnistlab: terminated`; no temporary file left",
    )


@pytest.mark.slow
@pytest.mark.parametrize("point", ["write:speedrun.json:1", "speedrun-floor"])
def test_a_speedrun_stopped_just_after_its_first_seed_keeps_it(tiny_env, reliability, point):
    out = tiny_env["tmp"] / "S"
    p = mnistlab(
        ["speedrun", "--dataset", "tiny", "--seeds", "3", "--device", "cpu", "--out", str(out)],
        tiny_env["env"],
        kill_at=point,
        kill_signal="TERM",
    )
    assert p.returncode == 143 and "Traceback" not in p.stderr, p.stderr[-800:]
    assert f"stopped after 1 of 3 seeds; {out / 'speedrun.json'} holds them" in p.stderr, p.stderr[-800:]
    assert "RunDir(" not in p.stderr
    assert len(json.loads((out / "speedrun.json").read_text())["runs"]) == 1
    assert json.loads((out / "status.json").read_text())["state"] == "terminated"
    reliability.record(
        "One exit door",
        f"SIGTERM just after a speedrun's first seed (`{point}`)",
        "exit 143; the finished seed kept in speedrun.json and named in the line; status terminated",
    )


# --- what the refactor (issue 29) already fixed, held to it -----------------------------------------

NAN_IN_EVAL = """import torch
from torch import nn

class Net(nn.Module):  # finite while it trains, NaN when evaluated: every step's loss is fine
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    def forward(self, x):
        out = self.fc(x)
        return out if self.training or x.shape[0] == 2 else out * float("nan")
"""
EXTRA_STATE = """import torch
from torch import nn

class Net(nn.Module):  # a state_dict with a number in it: saved, it could never be read back
    def __init__(self, num_classes=10):
        super().__init__()
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))

    def forward(self, x):
        return self.fc(x)

    def state_dict(self, *args, **kwargs):
        return {**super().state_dict(*args, **kwargs), "calls": 3}
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "code, state, words",
    [
        (NAN_IN_EVAL, "diverged", "the validation loss became nan"),
        (EXTRA_STATE, "failed", "holds 'calls', a int, not a tensor"),
    ],
)
def test_a_run_that_could_not_be_used_does_not_end_completed(tiny, tmp_path, capsys, reliability, code, state, words):
    (tmp_path / "m.py").write_text(code)
    line = one_line_error(capsys, [*TRAIN, "--model", f"{tmp_path / 'm.py'}:Net", "--run-dir", str(tmp_path / "r")])
    assert words in line, line
    assert open_run(tmp_path / "r").status()["state"] == state
    assert not (tmp_path / "r" / "last.pt").exists() and not (tmp_path / "r" / "test.json").exists()
    reliability.record(
        "One exit door",
        "a model whose validation loss is NaN (each step's finite)"
        if state == "diverged"
        else "a model whose state_dict holds a number",
        f"clear error; status `{state}`; no checkpoint or test.json that eval and resume would refuse",
    )

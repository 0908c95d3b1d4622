"""Users' models as an attacker (or a careless user) may write them: a spec naming any installed
callable, a model that prints, one that leaves a thread running, a symbolic link swapped to other code,
a channels-last model that flattens with .view(). Real processes: a hang, a core dump or a corrupted
stdout is the failure."""

from __future__ import annotations

import json

import pytest

from .conftest import is_one_line_error, make_tiny_env, mnistlab

TRAIN = ["train", "--dataset", "tiny", "--device", "cpu", "--epochs", "1", "--subset", "64", "--no-progress"]
NET = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    return make_tiny_env(tmp_path_factory.mktemp("models"))


def _write(folder, name: str, text: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


SPECS = {
    "signal:pause": "is part of the standard library",
    "os:abort": "is part of the standard library",
    "mnistlab.cli:main": "is part of mnistlab",
    "FILE:pause": "is defined in _signal, part of the standard library",
}


@pytest.mark.parametrize("spec", list(SPECS))
def test_a_spec_must_name_the_users_own_code(env, tmp_path, reliability, spec):
    spec = spec.replace("FILE", str(_write(tmp_path, "reexport.py", "from signal import pause\n")))
    for argv in (["summary", spec], [*TRAIN, "--model", spec, "--run-dir", tmp_path / "run"]):
        p = mnistlab(argv, env["env"], timeout=60)
        assert is_one_line_error(p) and SPECS[spec.replace(str(tmp_path / "reexport.py"), "FILE")] in p.stderr, p
    assert not (tmp_path / "run").exists()
    reliability.record(
        "Your own model",
        f"a model spec `{spec.replace(str(tmp_path) + '/', '')}` (not the user's code)",
        "clear error before it is imported or called (summary, train)",
        trials=2,
    )


@pytest.mark.slow
def test_a_runs_config_naming_a_callable_is_refused(env, tmp_path, reliability):
    run = tmp_path / "run"
    assert mnistlab([*TRAIN, "--run-dir", run], env["env"]).returncode == 0
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "model": "signal:pause"}))
    for argv in (["eval", run], ["report", run, "--out", tmp_path / "rep"]):
        p = mnistlab(argv, env["env"], timeout=60)
        assert is_one_line_error(p) and "signal is part of the standard library" in p.stderr, p
    reliability.record(
        "Your own model",
        "a run's config.json whose model is `signal:pause`",
        "clear error, nothing called (eval, report)",
        trials=2,
    )


LOUD = NET.replace("class Net", 'print("HELLO from the model file")\n\n\nclass Net').replace(
    "        return self.fc", '        print("HELLO from forward")\n        return self.fc'
)


@pytest.mark.slow
def test_a_model_that_prints_leaves_json_intact(env, tmp_path, reliability):
    model = f"{_write(tmp_path, 'loud.py', LOUD)}:Net"
    p = mnistlab(["profile", model, "--json"], env["env"], timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)[0]["parameters"] == 7850 and "HELLO" in p.stderr, p
    assert mnistlab([*TRAIN, "--model", model, "--run-dir", tmp_path / "run"], env["env"]).returncode == 0
    p = mnistlab(["eval", tmp_path / "run", "--json"], env["env"], timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["total"] == 64 and "HELLO from forward" in p.stderr, p
    reliability.record(
        "Your own model",
        "a model that prints (at import and in forward)",
        "its output goes to stderr; `profile --json` and `eval --json` stay valid JSON",
        trials=2,
    )


THREAD = NET.replace("import torch\n", "import threading\nimport time\n\nimport torch\n").replace(
    "        self.fc = nn.Linear(784, 10)\n",
    "        self.fc = nn.Linear(784, 10)\n        threading.Thread(target=time.sleep, args=(3600,), "
    "name='forever').start()\n",
)


@pytest.mark.slow
def test_a_model_that_leaves_a_thread_running_does_not_keep_train_alive(env, tmp_path, reliability):
    run = tmp_path / "run"
    p = mnistlab(
        [*TRAIN, "--model", f"{_write(tmp_path, 'thread.py', THREAD)}:Net", "--run-dir", run], env["env"], timeout=120
    )
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == str(run) and (run / "test.json").is_file(), p
    assert "not waiting for 1 thread(s) still running (forever" in p.stderr, p.stderr
    reliability.record(
        "Your own model",
        "a model that starts a non-daemon thread that never ends",
        "`train` finishes, prints its run and exits, saying it did not wait for the thread",
    )


@pytest.mark.slow
def test_resume_notices_a_symlinked_model_file_now_points_at_other_code(env, tmp_path, reliability):
    a, b = _write(tmp_path, "a.py", NET), _write(tmp_path, "b.py", NET.replace("784, 10", "784, 10, bias=False"))
    link, run = tmp_path / "link.py", tmp_path / "run"
    link.symlink_to(a)
    assert mnistlab([*TRAIN, "--model", f"{link}:Net", "--run-dir", run], env["env"]).returncode == 0
    link.unlink()
    link.symlink_to(b)
    p = mnistlab(["train", "--resume", run, "--epochs", "1", "--no-progress"], env["env"])
    assert is_one_line_error(p) and f"{link}, now a link to {b}: changed since this run started" in p.stderr, p
    reliability.record(
        "Your own model",
        "`--resume` after the model file (a symbolic link) was pointed at other code",
        "clear error naming the link and its new target; nothing trained",
    )


VIEW = NET.replace(
    "self.fc = nn.Linear(784, 10)", "self.conv = nn.Conv2d(1, 8, 3)\n        self.fc = nn.Linear(8 * 26 * 26, 10)"
).replace("return self.fc(x.flatten(1))", "x = torch.relu(self.conv(x))\n        return self.fc(x.view(x.size(0), -1))")


def test_channels_last_with_a_model_that_flattens_with_view(env, tmp_path, reliability):
    run = tmp_path / "run"
    p = mnistlab(
        [*TRAIN, "--model", f"{_write(tmp_path, 'view.py', VIEW)}:Net", "--channels-last", "--run-dir", run], env["env"]
    )
    assert is_one_line_error(p) and "flatten with x.flatten(1)" in p.stderr and not run.exists(), p
    reliability.record(
        "Speed levers",
        "`--channels-last` with a CNN that flattens with `x.view(x.size(0), -1)`",
        "clear error naming the model and the fix, before any run folder",
    )

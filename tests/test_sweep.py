"""Sweeps on Optuna: parameter parsing, a tiny study end to end, kill -9 then the same command, two workers."""

from __future__ import annotations

import pytest

from mnistlab.cli import main
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import open_run
from mnistlab.measure.sweep import ParamSpec, sweep_results
from tests.faults.conftest import make_tiny_env

SWEEP = ["sweep", "--study", "s", "--trials", "3", "--param", "lr=0.01:0.2:log", "--param", "momentum=0.5,0.9",
         "--dataset", "tiny", "--epochs", "2", "--device", "cpu"]


@pytest.mark.parametrize("text, expected", [
    ("lr=1e-3:1e-1:log", ParamSpec("lr", low=1e-3, high=1e-1, log=True)),
    ("momentum=0.5,0.9", ParamSpec("momentum", choices=(0.5, 0.9))),
    ("batch_size=32,64,128", ParamSpec("batch_size", choices=(32, 64, 128))),
    ("batch-size=16:128", ParamSpec("batch_size", low=16, high=128, integer=True)),
    ("epochs=2:4", ParamSpec("epochs", low=2, high=4, integer=True)),
    ("model=mlp,cnn", ParamSpec("model", choices=("mlp", "cnn"))),
])
def test_param_specs(text, expected):
    assert ParamSpec.parse(text) == expected


@pytest.mark.parametrize("text, words", [
    ("lr", "expected NAME="), ("lr=", "expected NAME="), ("=1,2", "expected NAME="),
    ("optimizer=adam,sgd", "unknown parameter"), ("device=cpu,cuda", "unknown parameter"),
    ("lr=0.1:0.1", "empty range"), ("lr=0.2:0.1", "empty range"), ("lr=0:1:log", "log range needs LOW > 0"),
    ("lr=a:b", "cannot read"), ("lr=1:2:3", "cannot read"), ("batch_size=1.5,2", "cannot read"),
    ("momentum=0.5,1.5", "momentum must be in"), ("lr=nan:1", "empty range"), ("model=mlp,vit", "unknown model"),
])
def test_bad_params_are_config_errors(text, words):
    with pytest.raises(ConfigError, match=words):
        ParamSpec.parse(text)


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = make_tiny_env(tmp_path)
    for var in ("MNISTLAB_DATA", "MNISTLAB_DATASETS_FILE"):
        monkeypatch.setenv(var, e["env"][var])
    monkeypatch.chdir(tmp_path)
    return e


def test_a_tiny_sweep_end_to_end(env, capsys):
    assert main([*SWEEP, "--pruner", "median"]) == 0
    out = capsys.readouterr().out
    sweep_dir = env["tmp"] / "runs" / "sweep-s"
    record, rows = sweep_results(sweep_dir)
    assert record["objective"] == "val_loss" and record["storage"].startswith("sqlite:///")
    assert len([r for r in rows if r.state in ("complete", "pruned")]) == 3
    for r in rows:  # each trial is an ordinary run directory, with the trial's parameters
        run = open_run(r.run_dir)
        assert run.config()["lr"] == pytest.approx(r.params["lr"]) and run.config()["momentum"] == r.params["momentum"]
        assert 0.01 <= r.params["lr"] <= 0.2 and r.epochs == len(run.metrics())
        assert r.best_val_loss == min(m["val_loss"] for m in run.metrics())
    assert "best trial:" in out and "trial-000" in out
    # the same command again: the study already has its 3 trials, nothing more is trained
    assert main([*SWEEP, "--pruner", "median"]) == 0
    assert len(sweep_results(sweep_dir)[1]) == 3
    assert main(["report", str(sweep_dir)]) == 0
    md = (sweep_dir / "report.md").read_text()
    assert "sweep-objective.png" in md and (sweep_dir / "figures" / "sweep-objective.png").stat().st_size > 1000
    assert md.count("| complete |") + md.count("| pruned |") == 3


def test_other_settings_in_the_same_folder_are_refused(env, capsys):
    assert main([*SWEEP[:4], "1", *SWEEP[5:]]) == 0
    code = main([*SWEEP[:4], "1", "--param", "lr=0.01,0.02", *SWEEP[7:]])
    assert code == 2 and "other settings" in capsys.readouterr().err


def test_bad_storage_is_one_line(env, capsys):
    assert main([*SWEEP, "--storage", "nosuchdb://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: --storage nosuchdb://x: cannot open") and err.count("\n") == 1

"""Sweeps on Optuna: parameter parsing, a tiny study end to end, kill -9 then the same command, two workers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.core.errors import ConfigError
from mnistlab.core.rundir import open_run
from mnistlab.jobs.sweep import ParamSpec
from mnistlab.measure.sweeps import sweep_results
from tests.faults.conftest import make_tiny_env

SWEEP = [
    "sweep",
    "--study",
    "s",
    "--trials",
    "3",
    "--param",
    "lr=0.01:0.2:log",
    "--param",
    "momentum=0.5,0.9",
    "--dataset",
    "tiny",
    "--epochs",
    "2",
    "--device",
    "cpu",
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lr=1e-3:1e-1:log", ParamSpec("lr", low=1e-3, high=1e-1, log=True)),
        ("momentum=0.5,0.9", ParamSpec("momentum", choices=(0.5, 0.9))),
        ("batch_size=32,64,128", ParamSpec("batch_size", choices=(32, 64, 128))),
        ("batch-size=16:128", ParamSpec("batch_size", low=16, high=128, integer=True)),
        ("epochs=2:4", ParamSpec("epochs", low=2, high=4, integer=True)),
        ("model=mlp,cnn", ParamSpec("model", choices=("mlp", "cnn"))),
    ],
)
def test_param_specs(text, expected):
    assert ParamSpec.parse(text) == expected


@pytest.mark.parametrize(
    "text, words",
    [
        ("lr", "expected NAME="),
        ("lr=", "expected NAME="),
        ("=1,2", "expected NAME="),
        ("optimizer=adam,sgd", "unknown parameter"),
        ("device=cpu,cuda", "unknown parameter"),
        ("lr=0.1:0.1", "empty range"),
        ("lr=0.2:0.1", "empty range"),
        ("lr=0:1:log", "log range needs LOW > 0"),
        ("lr=a:b", "cannot read"),
        ("lr=1:2:3", "cannot read"),
        ("batch_size=1.5,2", "cannot read"),
        ("momentum=0.5,1.5", "momentum must be"),
        ("lr=nan:1", "empty range"),
        ("model=mlp,vit", "unknown model"),
    ],
)
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


@pytest.mark.slow
def test_a_tiny_sweep_end_to_end(env, capsys):
    assert main([*SWEEP, "--pruner", "median"]) == 0
    out = capsys.readouterr().out
    sweep_dir = env["tmp"] / "runs" / "sweep-s"
    record, rows = sweep_results(sweep_dir)
    assert record["objective"] == "val_loss" and record["url"].startswith("sqlite:///")
    assert len([r for r in rows if r.state in ("complete", "pruned")]) == 3
    for r in rows:  # each trial is an ordinary run directory, with the trial's parameters
        run = open_run(r.run_dir)
        assert run.config()["lr"] == pytest.approx(r.params["lr"]) and run.config()["momentum"] == r.params["momentum"]
        assert 0.01 <= r.params["lr"] <= 0.2 and r.epochs == len(run.metrics())
        assert r.best_val_loss == min(m["val_loss"] for m in run.metrics())
        # a trial is a train job like `mnistlab train`: its final status, and its own figure
        assert run.status()["state"] in ("completed", "pruned") and (run / "loss.png").stat().st_size > 1000
    # the sweep folder records its own lifecycle, as every job's folder does
    assert json.loads((sweep_dir / "status.json").read_text()) == {
        "state": "completed",
        "job": "sweep",
        "trials": 3,
        "trials_done": 3,
    }
    assert "best trial:" in out and "trial-000" in out
    # the same command again: the study already has its 3 trials, nothing more is trained
    assert main([*SWEEP, "--pruner", "median"]) == 0
    assert len(sweep_results(sweep_dir)[1]) == 3
    assert main(["report", str(sweep_dir)]) == 0
    md = (sweep_dir / "report.md").read_text()
    assert "sweep-objective.png" in md and (sweep_dir / "figures" / "sweep-objective.png").stat().st_size > 1000
    assert md.count("| complete |") + md.count("| pruned |") == 3


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(env, capsys):
    assert main([*SWEEP[:4], "1", *SWEEP[5:]]) == 0
    code = main([*SWEEP[:4], "1", "--param", "lr=0.01,0.02", *SWEEP[7:]])
    assert code == 2 and "other settings" in capsys.readouterr().err


def test_bad_storage_is_one_line(env, capsys):
    assert main([*SWEEP, "--storage", "nosuchdb://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mnistlab: error: --storage nosuchdb://x: cannot open") and err.count("\n") == 1


def test_without_optuna_a_sweep_is_one_line_naming_the_extra(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import fails as if not installed (the [sweep] extra)
    assert main(SWEEP) == 2
    assert capsys.readouterr().err == "mnistlab: error: mnistlab sweep needs optuna: pip install 'mnistlab[sweep]'\n"
    assert not (env["tmp"] / "runs").exists()  # refused before anything is made


@pytest.mark.parametrize(
    "driver, url, words",
    [
        (
            "psycopg",
            "postgresql+psycopg://u@127.0.0.1:1/db",
            "mnistlab sweep --storage postgresql+psycopg://... needs psycopg: pip install 'mnistlab[postgres]'",
        ),
        (
            "psycopg2",
            "postgresql+psycopg2://u@127.0.0.1:1/db",
            "--storage names the psycopg2 driver, which is not installed: write postgresql+psycopg://... "
            "and pip install 'mnistlab[postgres]'",
        ),
    ],
)
def test_without_the_postgres_driver_is_one_line_naming_the_extra(env, capsys, monkeypatch, driver, url, words):
    monkeypatch.setitem(sys.modules, driver, None)
    assert main([*SWEEP, "--storage", url]) == 2
    assert capsys.readouterr().err == f"mnistlab: error: {words}\n"  # and the URL (a password?) is not echoed


def test_duplicate_params_and_a_newline_in_the_study_name_are_one_line(env, capsys):
    from tests.faults.conftest import one_line_error

    for params in (["lr=0.01:0.1", "lr=0.02,0.05"], ["lr=0.01:0.1", "lr=0.01:0.2"], ["momentum=0.5,0.9"] * 2):
        argv = [*SWEEP[:5], *(a for p in params for a in ("--param", p)), *SWEEP[9:]]
        assert "is given 2 times" in one_line_error(capsys, argv)
    assert "--study 's\\n'" in one_line_error(capsys, [SWEEP[0], "--study", "s\n", *SWEEP[3:]])
    assert not (env["tmp"] / "runs").exists()


def _tiny_sweep(tmp, out: str, *extra: str) -> list[str]:
    return [
        *SWEEP[:4],
        "1",
        *SWEEP[5:9],
        "--epochs",
        "1",
        "--dataset",
        "tiny",
        "--device",
        "cpu",
        "--storage",
        f"sqlite:///{tmp}/shared.db",
        "--out",
        str(tmp / out),
        *extra,
    ]


@pytest.mark.slow
def test_a_worker_that_disagrees_with_the_study_is_refused_before_it_trains(env, capsys):
    from tests.faults.conftest import one_line_error

    tmp = env["tmp"]
    model = tmp / "net.py"
    model.write_text((Path(__file__).parents[1] / "examples" / "lenet5.py").read_text())
    assert main(_tiny_sweep(tmp, "A", "--model", f"{model}:LeNet5")) == 0
    # another folder (another machine), other fixed options: refused, nothing trained there
    line = one_line_error(capsys, _tiny_sweep(tmp, "B", "--model", f"{model}:LeNet5", "--batch-size", "32"))
    assert "started with other settings (fixed.batch_size: 64 in the study, 32 here)" in line
    # the same spec, but the model file edited since: its SHA-256 differs
    model.write_text(model.read_text() + "\n# edited\n")
    line = one_line_error(capsys, _tiny_sweep(tmp, "B", "--model", f"{model}:LeNet5"))
    assert "model_sha256" in line and "started with other settings" in line
    assert not list((tmp / "B").glob("trial-*")) and not (tmp / "B" / "sweep.json").exists()


@pytest.mark.slow
def test_another_storage_in_the_same_folder_is_refused_before_sweep_json_changes(env, capsys):
    from tests.faults.conftest import one_line_error

    tmp = env["tmp"]
    assert main(_tiny_sweep(tmp, "A")) == 0
    before = (tmp / "A" / "sweep.json").read_bytes()
    line = one_line_error(capsys, [*_tiny_sweep(tmp, "A"), "--storage", f"sqlite:///{tmp}/other.db"])
    assert "other settings or storage" in line
    assert (tmp / "A" / "sweep.json").read_bytes() == before and not (tmp / "other.db").exists()


@pytest.mark.slow
def test_report_reads_a_moved_folder_and_creates_no_database(env, capsys):
    tmp = env["tmp"]
    assert main(_tiny_sweep(tmp, "A")) == 0
    (tmp / "shared.db").unlink()  # the study's storage is gone (another machine's server, say)
    (tmp / "A").rename(tmp / "moved")
    capsys.readouterr()
    assert main(["report", str(tmp / "moved")]) == 0
    assert not list(tmp.rglob("*.db")) and "| complete |" in (tmp / "moved" / "report.md").read_text()
    assert (
        main(
            [
                *SWEEP[:4],
                "1",
                *SWEEP[5:9],
                "--epochs",
                "1",
                "--dataset",
                "tiny",
                "--device",
                "cpu",
                "--out",
                str(tmp / "local"),
            ]
        )
        == 0
    )
    (tmp / "local" / "study.db").unlink()
    assert main(["report", str(tmp / "local")]) == 0 and not (tmp / "local" / "study.db").exists()


DELETE = object()
MALFORMED = [  # changes to a real sweep.json: its study and storage stay readable
    {"direction": "up"},
    {"objective": DELETE},
    {"objective": "val_accuracy"},
    {"params": DELETE},
    {"params": "lr"},
    {"params": []},
    {"params": [{"name": "lr"}]},
    {"params": ["lr"]},
    {"base": []},
    {"study": 3},
    {"study": "s\n"},
    {"storage": 5},
]


@pytest.mark.parametrize("change", [*MALFORMED, "not json", "a list"])
@pytest.mark.slow
def test_a_malformed_sweep_json_is_one_line(env, capsys, change):
    from tests.faults.conftest import one_line_error

    tmp = env["tmp"]
    assert main(_tiny_sweep(tmp, "A")) == 0
    record = json.loads((tmp / "A" / "sweep.json").read_text())
    if isinstance(change, dict):
        record = {k: v for k, v in (record | change).items() if v is not DELETE}
    text = json.dumps(record) if isinstance(change, dict) else {"not json": "{", "a list": "[]"}[change]
    (tmp / "A" / "sweep.json").write_text(text)
    before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))
    assert "sweep.json: " in one_line_error(capsys, ["report", str(tmp / "A")])
    assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == before


@pytest.mark.parametrize(
    "table",
    [
        {},
        [1],
        [{"number": 0, "state": "complete", "params": {}, "epochs": "2"}],
        [{"number": 0, "state": "odd", "params": {}, "epochs": 2}],
    ],
)
@pytest.mark.slow
def test_a_malformed_trials_table_is_one_line(env, capsys, table):
    from tests.faults.conftest import one_line_error

    tmp = env["tmp"]
    assert main(_tiny_sweep(tmp, "A")) == 0
    (tmp / "A" / "trials.json").write_text(json.dumps(table))
    line = one_line_error(capsys, ["report", str(tmp / "A")])
    assert "trials.json" in line and " must be " in line, line


def test_the_tables_show_a_short_trial_and_a_drawn_value_readably():
    from mnistlab.measure.sweeps import fmt_param, fmt_seconds

    assert fmt_seconds(0.0086) == "0.0086" and fmt_seconds(0.031) == "0.031" and fmt_seconds(12.34) == "12.3"
    assert fmt_param(0.049002967486136806) == "0.049" and fmt_param(64) == "64" and fmt_param(None) == "-"

import csv
import json

import pytest
import torch

from mnistlab.core.errors import CheckpointError, ConfigError, DivergenceError
from mnistlab.core.rundir import open_run
from mnistlab.jobs.train import train_run
from mnistlab.training import runner
from mnistlab.training.checkpoint import load_checkpoint
from mnistlab.training.config import TrainConfig


def cfg(**kw):
    base = dict(dataset="tiny", epochs=2, seed=0, device="cpu")
    return TrainConfig(**{**base, **kw})


def quiet(**kw):
    return dict(log=lambda m: None, progress=False, **kw)


def test_a_run_writes_its_whole_directory(tiny, tmp_path):
    run = train_run(cfg(), run_dir=tmp_path / "r", **quiet())
    names = {p.name for p in run.path.iterdir()}
    assert {
        "config.json",
        "env.json",
        "metrics.csv",
        "steps.csv",
        "last.pt",
        "best.pt",
        "test.json",
        "status.json",
    } <= names
    assert "loss.png" in names  # the train job draws it, for every caller (CLI, notebook, sweep trial)
    assert not [n for n in names if n.endswith(".tmp")]
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["global_step"] == 16  # 512 samples / 64
    steps = run.steps()
    assert steps[0]["step"] == 1 and all(s["train_loss"] > 0 for s in steps)
    test = run.test()
    confusion = torch.tensor(test["confusion"])
    assert test["total"] == 200 == int(confusion.sum()) and confusion.shape == (10, 10)
    assert test["correct"] == int(confusion.diagonal().sum()) and test["accuracy"] == test["correct"] / 200
    assert run.status()["state"] == "completed"
    env = run.env()
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    state = load_checkpoint(run / "last.pt")
    assert state["epoch"] == 2 and state["config"]["model"] == "mlp"


def test_learns_the_tiny_task(tiny, tmp_path):
    run = train_run(cfg(epochs=3, lr=0.05), run_dir=tmp_path / "r", **quiet())
    assert run.metrics()[-1]["val_accuracy"] > 0.9


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.slow
def test_resume_in_two_halves_equals_one_go(tiny, tmp_path, model, pinned_threads):
    n = 10 if model == "mlp" else 2
    whole = train_run(
        cfg(model=model, epochs=2 * n, subset=256 if model == "cnn" else None), run_dir=tmp_path / "whole", **quiet()
    )
    half = train_run(
        cfg(model=model, epochs=n, subset=256 if model == "cnn" else None), run_dir=tmp_path / "half", **quiet()
    )
    train_run(resume=half.path, overrides={"epochs": n}, **quiet())
    keys = ["epoch", "train_loss", "val_loss", "val_accuracy", "global_step"]
    assert [{k: r[k] for k in keys} for r in whole.metrics()] == [{k: r[k] for k in keys} for r in half.metrics()]
    assert whole.steps() == half.steps()
    assert whole.test()["loss"] == half.test()["loss"]
    assert json.loads((half / "config.json").read_text())["epochs"] == 2 * n


def test_ctrl_c_leaves_a_resumable_run(tiny, tmp_path, monkeypatch):
    real = runner.train_epoch

    def interrupt_in_epoch_2(*a, **kw):
        if kw["epoch"] == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(runner, "train_epoch", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg(epochs=3), run_dir=tmp_path / "r", **quiet())
    run = open_run(tmp_path / "r")
    assert load_checkpoint(run / "last.pt")["epoch"] == 1 and run.status()["state"] == "interrupted"
    monkeypatch.setattr(runner, "train_epoch", real)
    train_run(resume=run.path, **quiet())  # finishes the 3 epochs it was started with
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3] and run.status()["state"] == "completed"
    with pytest.raises(ConfigError, match="already finished"):
        train_run(resume=run.path, **quiet())


def test_csvs_ahead_of_the_checkpoint_are_rewound_on_resume(tiny, tmp_path):
    run = train_run(cfg(epochs=2), run_dir=tmp_path / "r", **quiet())
    (run / "status.json").write_text('{"state": "running"}')
    with open(run / "metrics.csv", "a", newline="") as f:  # as if killed after the CSV, before last.pt
        csv.writer(f).writerow([3] + [0] * 9)
    train_run(resume=run.path, overrides={"epochs": 1}, **quiet())
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3] and run.metrics()[-1]["train_loss"] > 0


def test_divergence_stops_with_epoch_and_step(tiny, tmp_path):
    with pytest.raises(DivergenceError, match=r"diverged: the loss became (nan|inf) at epoch 1, step \d+"):
        train_run(cfg(lr=1e5, momentum=0.9), run_dir=tmp_path / "r", **quiet())
    assert open_run(tmp_path / "r").status()["state"] == "diverged"


def test_early_stop_keeps_best(tiny, tmp_path, monkeypatch):
    real = runner.evaluate
    calls = {"n": 0}

    def worse_after_first(model, loader, n, **kw):
        res = real(model, loader, n, **kw)
        if not loader.shuffle and loader.num_samples == 128:  # the validation split (128 of 640)
            calls["n"] += 1
            return res.__class__(**{**res.to_dict(), "loss": float(calls["n"])})
        return res

    monkeypatch.setattr(runner, "evaluate", worse_after_first)
    run = train_run(cfg(epochs=10, early_stop=2), run_dir=tmp_path / "r", **quiet())
    assert len(run.metrics()) == 3 and run.status()["stopped_early"] is True
    assert load_checkpoint(run / "best.pt")["epoch"] == 1


def test_resume_refuses_other_settings_and_missing_checkpoint(tiny, tmp_path):
    run = train_run(cfg(epochs=2), run_dir=tmp_path / "r", **quiet())
    with pytest.raises(ConfigError, match="cannot resume with model='cnn'"):
        train_run(resume=run.path, overrides={"model": "cnn", "epochs": 1}, **quiet())
    (run / "last.pt").unlink()  # two epochs recorded: a lost checkpoint is an error, not a restart
    with pytest.raises(CheckpointError, match="last.pt: missing, but this run had saved 2 epoch"):
        train_run(resume=run.path, overrides={"epochs": 1}, **quiet())
    with pytest.raises(CheckpointError, match="not a mnistlab run directory"):
        train_run(resume=tmp_path, **quiet())


def test_existing_run_dir_is_never_overwritten(tiny, tmp_path):
    run = train_run(cfg(epochs=1), run_dir=tmp_path / "r", **quiet())
    before = (run / "metrics.csv").read_bytes()
    with pytest.raises(CheckpointError, match="already exists and is not empty"):
        train_run(cfg(epochs=1), run_dir=run.path, **quiet())
    assert (run / "metrics.csv").read_bytes() == before


def test_default_run_dirs_are_unique(tiny, tmp_path):
    a = train_run(cfg(epochs=1, subset=64), runs_base=tmp_path / "runs", **quiet())
    b = train_run(cfg(epochs=1, subset=64), runs_base=tmp_path / "runs", **quiet())
    assert a.path != b.path and a.path.parent == b.path.parent == tmp_path / "runs"

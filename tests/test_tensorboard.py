"""TensorBoard event files: every scalar equals the run's CSVs, hparams in the run's own folder,
--no-tensorboard writes none, and a resumed run continues the same curves without duplicates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.core.rundir import open_run
from mnistlab.jobs.train import train_run
from mnistlab.training import tblog
from mnistlab.training.checkpoint import load_checkpoint, save_checkpoint
from mnistlab.training.config import TrainConfig
from tests.conftest import tiny_train_argv
from tests.headless_browser import find_chromium
from tests.tbcheck import assert_events_match_run, hparams_of, read_scalars

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tensorboard_screenshot.py"
QUIET = dict(log=lambda m: None, progress=False)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "tiny", "epochs": 2, "device": "cpu", "log_every": 3, **kw})


def test_every_scalar_equals_the_csvs_and_hparams_are_in_the_run(tiny, tmp_path):
    run = train_run(cfg(), run_dir=tmp_path / "r", **QUIET)
    scalars = assert_events_match_run(run.path)
    assert set(scalars) == {tblog.STEP_TAG, *tblog.EPOCH_TAGS, *tblog.TEST_TAGS}
    assert len(scalars["train/loss"]) == 6 and len(scalars["val/loss"]) == 2  # 8 steps per epoch, every 3rd
    assert len(list(run.path.glob(tblog.EVENTS))) == 1
    values, metrics = hparams_of(run.path)
    assert values["model"] == "mlp" and values["lr"] == 0.01 and values["batch_size"] == 64
    assert values["deterministic"] == "False" and "data_dir" not in values and "early_stop" not in values
    assert metrics == list(tblog.HPARAM_METRICS)


def test_no_tensorboard_writes_no_event_files(tiny, tmp_path, capsys):
    assert main(tiny_train_argv(tmp_path / "r", "--no-tensorboard")) == 0
    assert not list((tmp_path / "r").glob("*tfevents*"))
    assert open_run(tmp_path / "r").status()["state"] == "completed"


def test_resume_continues_the_same_curves(tiny, tmp_path):
    run = train_run(cfg(), run_dir=tmp_path / "r", **QUIET)
    train_run(resume=run.path, overrides={"epochs": 2}, **QUIET)
    scalars = assert_events_match_run(run.path)
    assert [s for s, _ in scalars["val/loss"]] == [8, 16, 24, 32]
    values, _ = hparams_of(run.path)
    assert values["epochs"] == 4  # one set of hyper-parameters: the resumed run's


def test_resume_drops_events_written_ahead_of_the_checkpoint(tiny, tmp_path):
    """What a kill between an epoch's events and its last.pt leaves: events ahead of the checkpoint.
    (tests/faults/test_kill_training.py does this with real kills at named points.)"""
    run = train_run(cfg(epochs=3), run_dir=tmp_path / "r", **QUIET)
    whole = read_scalars(run.path)
    # rewind the run to its epoch-2 state by hand: last.pt of epoch 2, and the status of a killed run
    state = load_checkpoint(run / "last.pt")
    history = state["history"][:2]
    best = min(history, key=lambda r: r["val_loss"])
    state.update(
        epoch=2,
        history=history,
        step_log=[r for r in state["step_log"] if r["epoch"] <= 2],
        global_step=int(history[-1]["global_step"]),
        best_epoch=int(best["epoch"]),
        best_val_loss=best["val_loss"],
    )  # a consistent epoch-2 checkpoint: the loader checks all this
    save_checkpoint(run / "last.pt", state)
    (run / "status.json").write_text('{"state": "running"}')
    (run / "test.json").unlink()
    train_run(resume=run.path, **QUIET)  # trains epoch 3 again
    again = assert_events_match_run(run.path)
    assert [s for s, _ in again["val/loss"]] == [s for s, _ in whole["val/loss"]] == [8, 16, 24]


def test_a_stale_rewrite_folder_is_cleaned_and_never_read(tiny, tmp_path):
    run = train_run(cfg(epochs=1), run_dir=tmp_path / "r", **QUIET)
    half = run.path / ".tensorboard-rewrite"  # a rewrite killed half-way
    half.mkdir()
    (half / "events.out.tfevents.0.host.1.0").write_bytes(b"\x00" * 7)
    train_run(resume=run.path, overrides={"epochs": 1}, **QUIET)
    assert not half.exists()
    assert_events_match_run(run.path)


def test_unwritable_events_are_one_clear_error(tiny, tmp_path, monkeypatch, capsys):
    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tblog, "_summary_writer", refuse)
    code = main(tiny_train_argv(tmp_path / "r"))
    err = capsys.readouterr().err
    assert code == 2 and "cannot write TensorBoard events" in err and "--no-tensorboard" in err
    assert len(err.strip().splitlines()) == 1


def test_without_the_tensorboard_package_the_run_says_so_once_and_writes_no_events(tiny, tmp_path, monkeypatch, capsys):
    """TensorBoard is an extra: without it a run trains as usual, with one note naming the pip command."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    code = main(tiny_train_argv(tmp_path / "r"))
    out, err = capsys.readouterr()
    assert code == 0, err
    notes = [line for line in out.splitlines() if "TensorBoard" in line]
    assert notes == [
        "TensorBoard: no event files, the tensorboard package is not installed (pip install 'mnistlab[tensorboard]')"
    ]
    assert not list((tmp_path / "r").glob("*tfevents*"))
    assert open_run(tmp_path / "r").status()["state"] == "completed"
    # --no-tensorboard: no event files and no note
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "1", "--no-progress", "--no-tensorboard"]) == 0
    assert "TensorBoard" not in capsys.readouterr().out


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.slow
def test_screenshot_script_shows_two_runs(tiny, tmp_path):
    for model in ("mlp", "cnn"):
        train_run(cfg(model=model, epochs=1, max_steps=3), run_dir=tmp_path / "tb" / model, **QUIET)
    out = tmp_path / "tb.png"
    p = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "tb"), str(out)], capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    listed = p.stdout.splitlines()[0].partition(": ")[2].split(", ")
    assert sorted(listed) == ["cnn", "mlp"]  # what TensorBoard served when the shot was taken
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000

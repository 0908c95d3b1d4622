"""Issue 28, item 5: a lab that can be finished. A real lab process is SIGKILLed mid-way (right after the MLP's
second epoch is saved); `report` then says what is missing and why, never 'no run' for a folder that holds one;
`mnistlab lab --resume` runs what is missing, keeps what is done, and a second --resume has nothing left to do."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.core.rundir import RunDir
from mnistlab.report.document import md_escape
from tests.conftest import write_tiny_dataset

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def tiny_file(tmp_path, monkeypatch) -> str:
    """The tiny dataset as a row of $MNISTLAB_DATASETS_FILE, so that a separate process finds it too."""
    spec = write_tiny_dataset(tmp_path / "data", name="tinylab")
    row = {k: v for k, v in dataclasses.asdict(spec).items() if k != "image_size"}
    row["classes"], row["mirrors"] = list(spec.classes), []
    (tmp_path / "datasets.json").write_text(json.dumps([row]))
    monkeypatch.setenv("MNISTLAB_DATASETS_FILE", str(tmp_path / "datasets.json"))
    monkeypatch.setenv("MNISTLAB_DATA", str(tmp_path / "data"))
    return "tinylab"


@pytest.mark.slow
def test_a_lab_killed_mid_way_is_reported_then_finished_by_resume(tiny_file, tmp_path, capsys):
    lab = tmp_path / "lab"
    code = (
        f"from mnistlab.jobs.lab import run_lab; run_lab(quick=True, device='cpu', out={str(lab)!r}, "
        f"dataset={tiny_file!r}, progress=False)"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "MNISTLAB_KILL_AT": "after-checkpoint:2",
    }  # SIGKILL once the MLP's second epoch is saved
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    before = RunDir(lab / "mlp-cpu").metrics()
    assert len(before) == 2

    assert main(["report", str(lab)]) == 0
    md = (lab / "report.md").read_text()
    sheet = md[: md.index("<a id=")]
    assert (
        "Unfinished lab: mlp-cpu stopped after 2 of 10 epochs (its status still says running: killed, or still "
        "at work); cnn-cpu not run yet; the bench has not finished; the speedrun has not finished."
    ) in sheet
    assert f"mnistlab lab --resume {md_escape(str(lab), block_start=False)} runs what is missing" in sheet
    assert "no CPU run of the MLP" not in md and "| [Q2](#q2) |" in sheet and "Over its first 2 epochs" in sheet
    assert "Not answered: cnn-cpu not run yet: the lab stopped before it. | not answered |" in sheet

    capsys.readouterr()
    assert main(["lab", "--resume", str(lab), "--device", "cpu", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "mlp-cpu: mlp-cpu stopped after 2 of 10 epochs" in said and "resuming it" in said
    rows = RunDir(lab / "mlp-cpu").metrics()
    # the two epochs before the kill are kept as they were; the first 5 are finished, then 5 more, as planned
    assert rows[:2] == before and [int(r["epoch"]) for r in rows] == list(range(1, 11))
    assert [int(r["session"]) for r in rows] == [1, 1, 2, 2, 2, 3, 3, 3, 3, 3]
    assert len(RunDir(lab / "cnn-cpu").metrics()) == 2 and RunDir(lab / "cnn-cpu").test()
    record = json.loads((lab / "lab.json").read_text())
    assert record["runs"] == ["mlp-cpu", "cnn-cpu"] and record["bench"] == "bench" and record["speedrun"] == "speedrun"
    assert json.loads((lab / "status.json").read_text())["state"] == "completed"
    md = (lab / "report.md").read_text()
    assert "Unfinished" not in md and "| [Q7](#q7) |" in md

    capsys.readouterr()  # a finished lab: --resume keeps everything and only rebuilds the report
    assert main(["lab", "--resume", str(lab), "--device", "cpu", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "mlp-cpu: done (10 epochs), kept" in said and "bench: done, kept" in said and "speedrun: done, kept" in said
    assert RunDir(lab / "mlp-cpu").metrics() == rows


def test_resume_refuses_a_folder_that_is_no_lab_and_options_it_cannot_honour(tmp_path, capsys):
    assert main(["lab", "--resume", str(tmp_path)]) == 2
    assert "lab.json" in capsys.readouterr().err
    assert main(["lab", "--resume", str(tmp_path), "--quick"]) == 2
    assert "drop --quick" in capsys.readouterr().err

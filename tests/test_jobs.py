"""Jobs: the one layer that fetches, creates output folders and writes; the CLI and lab call it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import mnistlab
from mnistlab import cli, jobs
from mnistlab.training.config import TrainConfig

SRC = Path(mnistlab.__file__).parent
ORCHESTRATION = {"fetch", "create_run_dir", "write_json", "write_atomic", "write_csv", "save_checkpoint"}


def _names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
    }


def test_the_cli_only_parses_and_calls_jobs():
    assert not _names_used(SRC / "cli.py") & ORCHESTRATION


def test_evaluate_run_is_in_the_api_and_only_reads(tiny, tmp_path, capsys):
    run = jobs.train_run(
        TrainConfig(dataset="tiny", epochs=1, subset=128, device="cpu"),
        run_dir=tmp_path / "r",
        log=lambda m: None,
        progress=False,
        tensorboard=False,
    )
    before = {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()}
    ev = mnistlab.evaluate_run(run.path, log=lambda m: None)
    assert {p.name: p.stat().st_mtime_ns for p in run.path.iterdir()} == before
    assert ev.result.correct == run.test()["correct"] and ev.epoch == 1 and ev.checkpoint == "last"
    assert cli.main(["eval", str(run.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] == ev.result.correct
    assert (run.path / "loss.png").is_file()  # the training job draws its own figure


def test_bench_refuses_two_axes_at_once(capsys):
    assert cli.main(["bench", "--nproc", "2", "--implementations", "eager"]) == 2
    assert "--nproc and --implementations" in capsys.readouterr().err

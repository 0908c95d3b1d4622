"""Run directories and the files in them, as a user or an attacker may leave them: readers never delete,
one trainer per run, no silent restart, hostile config/metrics/test/lab files, names that are markup
or math, paths that are not UTF-8. Two runs are trained per module; each test works on copies.
In-process (the CLI's main) except where a real process is the point."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from mnistlab.cli import main
from mnistlab.core.atomicfile import write_atomic
from mnistlab.core.lock import FolderLock
from mnistlab.core.rundir import MAX_EPOCHS, METRIC_FIELDS, open_run
from mnistlab.core.writer import FILES
from mnistlab.data import datasets
from mnistlab.report import plots
from tests.conftest import write_tiny_dataset

from .conftest import background, in_background, is_one_line_error, make_tiny_env, mnistlab, one_line_error

TRAIN = ["train", "--dataset", "tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-epoch run, and a finished 1-epoch --subset 64 run trained with progress bars on
    while stderr was not a terminal (what that wrote to stderr is kept)."""
    base = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "tiny", write_tiny_dataset(base / "data"))
        mp.setenv("MNISTLAB_DATA", str(base / "data"))
        with contextlib.redirect_stdout(io.StringIO()):
            assert main([*TRAIN, "--epochs", "2", "--no-progress", "--run-dir", str(base / "full")]) == 0
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                assert main([*TRAIN, "--epochs", "1", "--subset", "64", "--run-dir", str(base / "subset")]) == 0
    return {"full": base / "full", "subset": base / "subset", "subset_stderr": err.getvalue()}


@pytest.fixture
def copy(trained, tiny, tmp_path):
    def make(which: str = "full", name: str = "run"):
        shutil.copytree(trained[which], tmp_path / name)
        return tmp_path / name

    return make


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- nothing lost ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_readers_never_delete(copy, tmp_path, capsys, reliability):
    run = copy()
    (run / ".user-notes.tmp").write_text("mine")
    (run / ".metrics.csv.abcd1234.tmp").write_text("a write a kill interrupted")
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / ".metrics.csv.abcd1234.tmp").write_text("someone's file")
    before = {run: _files(run), other: _files(other)}
    listing = sorted(run.rglob("*"))
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png")]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert main(["plot", str(run)]) == 0 and main(["report", str(run)]) == 0  # no --out: the current directory
    capsys.readouterr()
    for argv in (["eval", str(other)], ["plot", str(other)], ["report", str(other)]):
        one_line_error(capsys, argv)
    assert {run: _files(run), other: _files(other)} == before and sorted(run.rglob("*")) == listing
    assert (tmp_path / "run-loss.png").is_file() and (tmp_path / "report.md").is_file()
    reliability.record(
        "Nothing lost",
        "temporary-looking files in a run (and in a folder that is not one) "
        "under eval, plot, report (with and without --out)",
        "readers delete nothing, change nothing, add nothing to the run",
        trials=8,
    )


def test_run_dir_that_holds_a_users_file_is_not_taken(tmp_path, tiny, capsys, reliability):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / ".notes.tmp").write_text("a user's own file, named like a temporary")
    line = one_line_error(capsys, [*TRAIN, "--epochs", "1", "--run-dir", str(folder)])
    assert "already exists and is not empty" in line
    assert (folder / ".notes.tmp").read_text().startswith("a user's own file")
    reliability.record(
        "Nothing lost",
        "`--run-dir` on a folder holding only a user's `.notes.tmp`",
        "refused (exit 2, one line); the file kept",
    )


def test_second_trainer_is_refused(copy, capsys, reliability):
    run = copy()
    before = _files(run)
    with FolderLock(run, what="run"):
        line = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "1", "--no-progress"])
    assert f"in use by process {os.getpid()}" in line, line
    assert {k: v for k, v in _files(run).items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}
    reliability.record(
        "Nothing lost",
        "a second `--resume` of a run that is training",
        "refused (exit 2, one line naming the holder's pid); the run untouched",
    )


@pytest.mark.parametrize("which", ["subset", "full"])
def test_lost_last_pt_is_not_a_restart(copy, capsys, reliability, which):
    run = copy(which)
    (run / "last.pt").unlink()
    before = _files(run)
    line = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert "last.pt: missing, but this run had saved" in line, line
    assert _files(run) == before
    reliability.record(
        "Nothing lost",
        "`--resume` of a finished run whose last.pt was deleted (1 and 2 epochs)",
        "refused (exit 2, one line), never trained again from scratch",
    )


def test_files_keep_the_umask_mode(tmp_path, reliability):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a", b"x")
        os.umask(0o002)
        write_atomic(tmp_path / "b", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o664
    reliability.record("Nothing lost", "files written under umask 027 and 002", "modes 0640 and 0664 (not 0600)")


# --- one line, exit 2 ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["18000000000000", str(2**64)])
def test_seed_out_of_range(tmp_path, tiny, capsys, reliability, seed):
    line = one_line_error(capsys, [*TRAIN, "--seed", seed, "--run-dir", str(tmp_path / "r")])
    assert "seed must be a whole number in 0.." in line and not (tmp_path / "r").exists()
    reliability.record("Command line", "`--seed` of 1.8e13 and 2^64", "clear error before a run directory exists")


CONFIGS = {
    "`[]`": [],
    "`null`": None,
    "`{}`": {},
    "a list as dataset": {"dataset": ["tiny"]},
    "a number as data_dir": {"data_dir": 5},
    '`"subset": true`': {"subset": True},
    '`"lr": "fast"`': {"lr": "fast"},
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_bad_config_json(copy, tmp_path, capsys, reliability, case):
    run = copy()
    change = CONFIGS[case]
    good = json.loads((run / "config.json").read_text())
    bad = {**good, **change} if isinstance(change, dict) and change else change
    (run / "config.json").write_text(json.dumps(bad))
    for argv in (
        ["eval", str(run)],
        ["train", "--resume", str(run), "--epochs", "1", "--no-progress"],
        ["report", str(run), "--out", str(tmp_path / "rep")],
    ):
        line = one_line_error(capsys, argv)
        assert str(run / "config.json") in line, line
    kind = "that is" if case in ("`[]`", "`null`", "`{}`") else "with"
    reliability.record(
        "Hostile run files",
        f"config.json {kind} {case}",
        "clear error naming the file (eval, resume, report)",
        trials=3,
    )


def test_plot_and_report_on_metrics_missing_a_column(copy, tmp_path, capsys, reliability):
    run = copy()
    rows = open_run(run).metrics()
    FILES.csv(
        run / "metrics.csv",
        [f for f in METRIC_FIELDS if f != "val_loss"],
        [{k: v for k, v in r.items() if k != "val_loss"} for r in rows],
    )
    for argv in (["plot", str(run), "--out", str(tmp_path / "p.png")], ["report", str(run), "--out", str(tmp_path)]):
        assert "missing column val_loss" in one_line_error(capsys, argv)
    reliability.record("Hostile run files", "metrics.csv missing a column", "clear error (plot, report)", trials=2)


def test_report_on_bad_test_and_lab_files(copy, tmp_path, capsys, reliability):
    run = copy()
    test = json.loads((run / "test.json").read_text())
    (run / "test.json").write_text(json.dumps({**test, "accuracy": "high"}))
    line = one_line_error(capsys, ["report", str(run), "--out", str(tmp_path / "a")])
    assert "test.json" in line and "accuracy" in line, line
    lab = tmp_path / "lab"
    lab.mkdir()
    for content, words in (
        ({"runs": 3}, "field 'runs'"),
        ({"runs": ["../../etc"]}, "which is not a folder"),
        ([], "expected a JSON object"),
    ):
        (lab / "lab.json").write_text(json.dumps(content))
        assert words in one_line_error(capsys, ["report", str(lab)])
    reliability.record(
        "Hostile run files",
        "test.json accuracy as text; lab.json `runs` a number, a path out of the lab, or not an object",
        "clear error naming the file and field (report)",
        trials=4,
    )


@pytest.mark.slow
def test_report_on_a_train_loss_of_exactly_zero(copy, tmp_path, reliability):
    run = copy()
    rows = open_run(run).metrics()
    rows[-1]["train_loss"] = 0.0
    FILES.csv(run / "metrics.csv", METRIC_FIELDS, rows)
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| 0.0000 |" in md and "Q4" in md and "nan" not in md.lower() and "inf" not in md.split()
    reliability.record("Hostile run files", "a run whose train loss reached exactly 0.0", "report written")


# --- names shown literally -------------------------------------------------------------------------

NAMES = ["$^^$", "$5_vs_$6", "_hidden", "<img src=x onerror=alert(1)>", "a run with spaces"]


@pytest.mark.slow
def test_names_are_shown_literally(copy, tmp_path, capsys, monkeypatch, reliability):
    runs = [copy(name=n) for n in NAMES]
    legends = []
    save = plots.save_figure

    def keep_legends(fig, out):
        legends.append([t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()])
        return save(fig, out)

    monkeypatch.setattr(plots, "save_figure", keep_legends)
    assert main(["plot", *map(str, runs), "--out", str(tmp_path / "compare.png")]) == 0
    assert set(NAMES) <= set(legends[-1]) and f"{NAMES[1]}: train" in legends[-1]
    assert main(["report", *map(str, runs), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert r"\$5\_vs\_\$6" in md and r"\_hidden" in md
    links = re.findall(r"!\[[^\]\n]*\]\(([^)\n]*)\)", md)
    assert len(links) >= len(NAMES) and all(re.fullmatch(r"[A-Za-z0-9%._/~-]+", link) for link in links), links
    assert all(
        (tmp_path / "rep" / re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), link)).is_file() for link in links
    )
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    reliability.record(
        "Names",
        "runs named `$^^$`, `$5_vs_$6`, `_hidden`, `<img src=x onerror=…>`, with spaces",
        "plot and report: names shown literally in legends; report.md escaped, image links percent-encoded",
        trials=2,
    )


@in_background
def run_named_in_bytes(tmp):
    """A fresh interpreter (its start-up decodes the argument and sets up the streams)."""
    env = make_tiny_env(tmp)["env"]
    name = os.fsencode(tmp) + b"/run-\xff\xfe"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            *TRAIN,
            "--epochs",
            "1",
            "--subset",
            "64",
            "--no-progress",
            "--run-dir",
            name,
        ],
        capture_output=True,
        timeout=300,
        env={**env, "PYTHONIOENCODING": "utf-8"},
    )  # strict UTF-8, as in a UTF-8 locale
    return name, p


def test_run_dir_that_is_not_utf8(reliability):
    name, p = background(run_named_in_bytes)
    assert p.returncode == 0 and b"Traceback" not in p.stderr, p.stderr[-800:]
    assert p.stdout.splitlines()[-1] == name and os.path.isfile(name + b"/test.json")
    reliability.record(
        "Names", "a `--run-dir` name that is not valid UTF-8", "the run finishes and its path is printed (as its bytes)"
    )


# --- smaller ---------------------------------------------------------------------------------------


def test_eval_of_a_subset_run_uses_its_test_subset(copy, capsys, reliability):
    run = copy("subset")
    assert main(["eval", str(run), "--device", "cpu", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["total"] == open_run(run).test()["total"] == 64 and out["subset"] == 64
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    assert "the first 64 test images only" in capsys.readouterr().out
    reliability.record("Smaller", "`eval` of a `--subset 64` run", "scores the run's 64 test images, and says so")


def test_no_progress_bar_redraws_when_stderr_is_not_a_terminal(trained, reliability):
    assert "\r" not in trained["subset_stderr"]
    reliability.record("Smaller", "training with progress bars on, stderr a file", "no `\\r` redraws in it")


# --- readers: only regular files, values in range, bounded sizes ------------------------------------

SPECIAL_FILES = {
    "a FIFO": ("is a FIFO", lambda p: os.mkfifo(p)),
    "a link to /dev/zero": ("is a device", lambda p: p.symlink_to("/dev/zero")),
}


@pytest.mark.parametrize("kind", list(SPECIAL_FILES))
@pytest.mark.slow
def test_special_files_are_refused(copy, tmp_path, reliability, kind):
    """Real processes, so that a reader that blocks on a FIFO or reads /dev/zero forever fails here
    by its timeout instead of hanging the suite."""
    words, make = SPECIAL_FILES[kind]
    env = make_tiny_env(tmp_path / "env")["env"]
    trials = 0
    for name in ("metrics.csv", "test.json", "env.json"):
        run = copy(name=f"run-{name}")
        (run / name).unlink()
        make(run / name)
        commands = [["report", run, "--out", tmp_path / f"rep-{name}"]]
        if name == "metrics.csv":
            commands.append(["plot", run, "--out", tmp_path / "p.png"])
        for argv in commands:
            p = mnistlab(argv, env, timeout=60)
            assert is_one_line_error(p) and f"{run / name}: {words}" in p.stderr, p.stderr[-800:]
            trials += 1
    reliability.record(
        "Hostile run files",
        f"metrics.csv, test.json or env.json as {kind}",
        "clear error naming the file, nothing read (plot, report)",
        trials=trials,
    )


BAD_VALUES = {
    "epoch": ["nan", "2.5", "0"],
    "session": ["nan"],
    "train_loss": ["inf", "-inf", "nan", "1e308"],
    "val_accuracy": ["1.5"],
    "train_seconds": ["-1"],
    "steps": ["-inf"],
    # the optional columns later versions added (load, warm-up, threads) are checked the same way
    "load_1m": ["nan"],
    "cpu_count": ["0"],
    "warmup_s": ["inf"],
    "threads": ["-5"],
}


def test_every_column_a_run_writes_has_its_range():
    """A new metrics.csv or steps.csv column cannot reach a reader unchecked (load_1m, threads, warmup_s
    and cpu_count once did: a report printed 'a inf s cold start')."""
    from mnistlab.core.rundir import METRIC_RANGES, STEP_FIELDS, STEP_RANGES

    assert set(METRIC_RANGES) == set(METRIC_FIELDS) and set(STEP_RANGES) == set(STEP_FIELDS)


@pytest.mark.parametrize("column", list(BAD_VALUES))
def test_metrics_values_out_of_range(copy, tmp_path, capsys, reliability, column):
    run = copy()
    rows = open_run(run).metrics()
    for value in BAD_VALUES[column]:
        FILES.csv(run / "metrics.csv", METRIC_FIELDS, [rows[0], {**rows[1], column: value}])
        for argv in (
            ["plot", str(run), "--out", str(tmp_path / "p.png")],
            ["report", str(run), "--out", str(tmp_path / "rep")],
        ):
            line = one_line_error(capsys, argv)
            assert f"metrics.csv: line 3: {column} must be" in line and repr(float(value)) in line, line
    reliability.record(
        "Hostile run files",
        f"metrics.csv with {column} " + ", ".join(BAD_VALUES[column]),
        "clear error naming the file, line and column (plot, report)",
        trials=2 * len(BAD_VALUES[column]),
    )


@pytest.mark.slow
def test_metrics_with_too_many_rows(copy, tmp_path, capsys, reliability):
    run = copy()
    row = open_run(run).metrics()[0]
    text = ",".join(METRIC_FIELDS) + "\n" + ",".join(str(row.get(k, "")) for k in METRIC_FIELDS) + "\n"
    (run / "metrics.csv").write_text(text + text.partition("\n")[2] * MAX_EPOCHS)
    for argv in (["plot", str(run), "--out", str(tmp_path / "p.png")], ["report", str(run), "--out", str(tmp_path)]):
        assert f"more than {MAX_EPOCHS:,} rows" in one_line_error(capsys, argv)
    reliability.record(
        "Resource bounds",
        f"metrics.csv of {MAX_EPOCHS + 1:,} rows",
        "clear error at once, nothing drawn (plot, report)",
        trials=2,
    )


@pytest.mark.slow
def test_report_on_a_run_whose_name_is_not_utf8(copy, tmp_path, reliability):
    run = copy()
    bad = os.fsdecode(os.fsencode(run.parent) + b"/bad-\xff-name")  # as Python sees such an argument
    os.rename(run, bad)
    assert main(["report", bad, "--out", str(tmp_path / "rep")]) == 0
    assert "bad-\ufffd-name" in (tmp_path / "rep" / "report.md").read_text(errors="replace")
    reliability.record(
        "Names",
        "`report` of a run folder whose name is not valid UTF-8",
        "report written; the name shown with U+FFFD for the bad byte",
    )


def test_eval_only_reads_the_data_dir_its_config_names(copy, tiny, tmp_path, capsys, reliability):
    run = copy()
    config = json.loads((run / "config.json").read_text())
    absent, empty = tmp_path / "absent" / "data", tmp_path / "empty"
    empty.mkdir()
    for root, words in ((absent, "no such folder"), (empty, "not there")):
        (run / "config.json").write_text(json.dumps({**config, "data_dir": str(root)}))
        line = one_line_error(capsys, ["eval", str(run), "--device", "cpu"])
        assert words in line and "pass --data-dir" in line and str(run / "config.json") in line, line
    assert not (tmp_path / "absent").exists() and not any(empty.iterdir())
    assert main(["eval", str(run), "--device", "cpu", "--data-dir", str(tiny[1])]) == 0
    reliability.record(
        "Nothing lost",
        "`eval` of a run whose config.json names a data_dir that is absent or empty",
        "clear error suggesting --data-dir; nothing created or fetched there",
        trials=2,
    )


# --- TensorBoard files on --resume -----------------------------------------------------------------

RESUME = ["train", "--epochs", "1", "--no-progress", "--resume"]


def test_tensorboard_rewrite_folder_as_a_link_is_refused(copy, tmp_path, capsys, reliability):
    run, outside = copy(), tmp_path / "outside"
    outside.mkdir()
    (outside / "events.out.tfevents.1700000000.host.1.0").write_bytes(b"someone else's events")
    (outside / "notes.txt").write_text("mine")
    (run / ".tensorboard-rewrite").symlink_to(outside)
    before = {outside: _files(outside), run: _files(run)}
    assert "is a symbolic link" in one_line_error(capsys, [*RESUME, str(run)])
    assert _files(outside) == before[outside]
    assert {k: v for k, v in _files(run).items() if "tfevents" in k} == {
        k: v for k, v in before[run].items() if "tfevents" in k
    }
    reliability.record(
        "Nothing lost",
        "`RUN/.tensorboard-rewrite` as a link to another folder, then --resume",
        "clear error; nothing written there, moved from there or deleted",
    )


def test_resume_keeps_a_users_own_event_file(copy, reliability):
    run = copy()
    mine = run / "events.out.tfevents.1700000000.host.mynotes"
    mine.write_bytes(b"a user's own log")
    ours = sorted(p.name for p in run.glob("events.out.tfevents.*") if p != mine)
    assert main([*RESUME, str(run)]) == 0
    assert mine.read_bytes() == b"a user's own log"
    now = sorted(p.name for p in run.glob("events.out.tfevents.*") if p != mine)
    assert ours and len(now) == 2 and not set(ours) & set(now)  # ours: the rewritten history, and this session's
    reliability.record(
        "Nothing lost",
        "a user's own `events.out.tfevents.*.mynotes` in a run, then --resume",
        "kept as it was; only mnistlab's own event files are rewritten",
    )

"""Issue 30's conventions: the library logs through `logging` (the CLI prints), progress bars only where
they redraw in place and not turned off, and Optuna's log level left as it was found."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab import cli
from mnistlab.core import logs, progress

SRC = str(Path(__file__).resolve().parents[1] / "src")


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# --- logging ---------------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        check=True,
    )


def test_a_library_line_prints_on_stdout_where_nothing_configured_logging():
    p = _python("from mnistlab.core.logs import lines; lines('mnistlab.jobs.x')('epoch 1 done')")
    assert (p.stdout, p.stderr) == ("epoch 1 done\n", "")


def test_configured_logging_receives_the_lines_and_nothing_else_prints_them():
    p = _python(
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, format='%(name)s %(levelname)s %(message)s')\n"
        "from mnistlab.core.logs import lines; lines('mnistlab.jobs.x')('epoch 1 done')"
    )
    assert (p.stdout, p.stderr) == ("", "mnistlab.jobs.x INFO epoch 1 done\n")


def test_silenced_by_the_mnistlab_loggers_level():
    p = _python(
        "import logging; logging.getLogger('mnistlab').setLevel(logging.WARNING)\n"
        "from mnistlab.core.logs import lines; lines('mnistlab.jobs.x')('epoch 1 done')"
    )
    assert (p.stdout, p.stderr) == ("", "")


def test_printing_sends_the_lines_to_its_stream_only_and_restores_the_logger(caplog):
    root = logging.getLogger(logs.ROOT)
    before = (list(root.handlers), root.propagate)
    buf = io.StringIO()
    with caplog.at_level(logging.INFO), logs.printing(buf):
        logs.lines("mnistlab.jobs.x")("one")
        logging.getLogger("mnistlab.jobs.x").debug("below INFO")
    with logs.printing(buf, logging.WARNING):
        logs.lines("mnistlab.jobs.x")("quiet: not printed")
        logging.getLogger("mnistlab.jobs.x").warning("a warning still is")
    assert buf.getvalue() == "one\na warning still is\n"
    assert not [r for r in caplog.records if r.name.startswith("mnistlab")]  # not also to the program's handler
    assert (list(root.handlers), root.propagate) == before


# --- progress bars ---------------------------------------------------------------------------------


def test_no_bar_where_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress.shown()
    with progress.bar(3, "trials") as bar:
        assert bar.disable
        bar.update()
    assert sys.stderr.getvalue() == ""


def test_a_bar_on_a_terminal_shows_the_time_left_and_turned_off_shows_none(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert progress.shown()
    with progress.bar(4, "speedrun seeds", "seed") as bar:
        assert not bar.disable
        bar.update(2)
        bar.refresh()
        drawn = sys.stderr.getvalue()
    assert "speedrun seeds" in drawn and "2/4" in drawn and "<" in drawn  # elapsed<left
    with progress.turned_off(), progress.turned_off(False):
        assert not progress.shown() and progress.bar(4, "x").disable
    assert progress.shown()  # back on after the block


def test_reading_advances_the_bar_by_the_bytes_read():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    stream = progress.Reading(io.BytesIO(b"x" * 1000), bar)
    assert len(stream.read(300)) == 300 and len(stream.read()) == 700 and stream.read() == b""
    assert bar.n == 1000


@pytest.mark.parametrize(
    "argv, shown, printed",
    [
        (["speedrun"], True, True),
        (["speedrun", "--no-progress"], False, True),
        (["speedrun", "-q"], False, False),
        (["sweep", "--study", "s", "--trials", "1", "--param", "lr=0.1,0.2", "--no-progress"], False, True),
    ],
)
def test_the_command_line_turns_bars_and_lines_off(monkeypatch, argv, shown, printed):
    seen = {}

    def command(args, out):
        seen["shown"] = progress.shown()
        logs.lines("mnistlab.jobs.x")("a progress line")
        return 0

    monkeypatch.setitem(cli._COMMANDS, argv[0], command)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert cli.main(argv) == 0
    assert seen["shown"] is shown
    assert ("a progress line" in sys.stderr.getvalue()) is printed
    assert progress.shown()  # the command's settings end with it


# --- Optuna's log level ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_leaves_optunas_log_level_as_it_found_it_and_prints_json(tmp_path, monkeypatch, capsys):
    import json

    optuna = pytest.importorskip("optuna")
    from tests.faults.conftest import make_tiny_env

    e = make_tiny_env(tmp_path)
    for var in ("MNISTLAB_DATA", "MNISTLAB_DATASETS_FILE"):
        monkeypatch.setenv(var, e["env"][var])
    monkeypatch.chdir(tmp_path)
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        argv = [
            "sweep",
            "--study",
            "s",
            "--trials",
            "1",
            "--param",
            "lr=0.01,0.1",
            "--dataset",
            "tiny",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--json",
        ]
        assert cli.main(argv) == 0
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)
    data = json.loads(capsys.readouterr().out)
    assert data["folder"] == str(tmp_path / "runs" / "sweep-s")
    assert data["sweep"]["study"] == "s" and data["best_trial"] == 0
    assert [t["state"] for t in data["trials"]] == ["complete"] and data["trials"][0]["params"]["lr"] in (0.01, 0.1)

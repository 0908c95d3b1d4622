"""A sweep folder serves one study: a study deleted and created again under its name (or sqlite:///:memory: run
twice) is refused before the folder's first write, keeping the old trials.json; a refused study leaves no folder
behind. In-process, on SQLite."""

from __future__ import annotations

import json

import pytest

from mnistlab.cli import main
from tests.conftest import tiny_sweep_argv

from .conftest import one_line_error

pytest.importorskip("optuna")

SWEEP = tiny_sweep_argv()


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".study.lock"}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted and created again", "sqlite:///:memory: run twice"])
def test_a_study_created_again_under_its_name_does_not_reuse_the_folder(tiny, tmp_path, capsys, reliability, how):
    import optuna

    url = "sqlite:///:memory:" if how.startswith("sqlite") else f"sqlite:///{tmp_path / 'shared.db'}"
    argv = [*SWEEP, "--storage", url, "--out", str(tmp_path / "sw")]
    assert main(argv) == 0
    capsys.readouterr()
    before = _files(tmp_path / "sw")
    if how.startswith("deleted"):
        optuna.delete_study(study_name="s", storage=url)
    line = one_line_error(capsys, argv)
    assert "holds the trials of an earlier study named s" in line and "another --out" in line, line
    assert "--resume" not in line
    assert _files(tmp_path / "sw") == before  # trials.json, sweep.json and status.json untouched
    assert main([*argv[:-1], str(tmp_path / "sw2")]) == 0  # the new study in its own folder
    assert [t["number"] for t in json.loads((tmp_path / "sw2" / "trials.json").read_text())] == [0]
    reliability.record(
        "Sweeps: the study and its folder",
        f"a study {how}, then the same command",
        "clear error before the folder's first write (exit 2, one line, no `--resume`); the old "
        "trials.json kept byte for byte; the new study runs in another --out",
    )


def test_a_refused_study_leaves_no_folder_behind(tiny, tmp_path, capsys, reliability):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert main([*SWEEP, "--storage", url, "--out", str(tmp_path / "a"), "--trials", "1"]) == 0
    capsys.readouterr()
    other = [
        "sweep",
        "--study",
        "s",
        "--trials",
        "1",
        "--param",
        "lr=0.03,0.04",
        "--dataset",
        "tiny",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--storage",
        url,
    ]
    for out, words in ((tmp_path / "b", "was started with other settings"), (tmp_path / "c", "cannot open the study")):
        argv = (
            [*other, "--out", str(out)]
            if out.name == "b"
            else [*other, "--out", str(out), "--storage", f"sqlite:///{tmp_path / 'no' / 'such' / 'x.db'}"]
        )
        assert words in one_line_error(capsys, argv)
        assert not out.exists()
    reliability.record(
        "Sweeps: the study and its folder",
        "a refused study (other settings; a storage that cannot be opened) with a new --out",
        "clear error; no folder (and no .study.lock) left behind",
        trials=2,
    )

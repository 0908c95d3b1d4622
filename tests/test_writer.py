"""The rank policy is explicit: a Writer passed where files are written; RANK alone changes nothing."""

from __future__ import annotations

import pytest

from mnistlab import cli
from mnistlab.core.distributed import World, world
from mnistlab.core.writer import FILES, SILENT, writer_for


def test_rank_without_a_process_group_changes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert world() == World() and writer_for(world()) is FILES
    FILES.json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text().strip().startswith("{")


def test_only_the_silent_writer_skips_and_only_other_ranks_get_it(monkeypatch, tmp_path):
    SILENT.json(tmp_path / "b.json", {"x": 1})
    SILENT.bytes(tmp_path / "c.bin", b"x")
    assert not list(tmp_path.iterdir())
    assert writer_for(World(rank=1, size=2)) is SILENT and writer_for(World(rank=0, size=2)) is FILES


@pytest.mark.slow
def test_rank_1_plot_writes_the_file_it_names(tiny, tmp_path, monkeypatch, capsys):
    assert (
        cli.main(
            [
                "train",
                "--dataset",
                "tiny",
                "--epochs",
                "1",
                "--subset",
                "128",
                "--device",
                "cpu",
                "--run-dir",
                str(tmp_path / "r"),
                "--no-progress",
                "--no-tensorboard",
            ]
        )
        == 0
    )
    monkeypatch.setenv("RANK", "1")
    assert cli.main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000

"""The notebook-flow example runs end to end (tiny data, a step limit)."""

import runpy
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "notebook_tour.py"


def test_notebook_tour_runs(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_EXAMPLE_STEPS", "3")
    monkeypatch.setenv("MNISTLAB_EXAMPLE_DATASET", "tiny")
    monkeypatch.setenv("MNISTLAB_EXAMPLE_OUT", str(tmp_path / "tour"))
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "first training label" in out and "test accuracy" in out and "454,400" in out
    assert "of each step is" in out and "validation loss" in out
    assert (tmp_path / "tour" / "mlp-20.png").is_file()

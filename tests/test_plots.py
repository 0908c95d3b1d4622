"""Figures: the user's matplotlib backend left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mnistlab.report import plots


def test_importing_plots_leaves_the_backend_alone(tmp_path):
    """A notebook user's backend (here 'svg', which needs no display) stays theirs, and drawing a
    figure leaves no pyplot figure open."""
    code = ("import matplotlib, matplotlib.pyplot as plt\n"
            "before = matplotlib.get_backend()\n"
            "from mnistlab.report.plots import plot_label_histogram\n"
            f"plot_label_histogram(['0', '1'], [3, 4], [1, 2], __import__('pathlib').Path({str(tmp_path)!r}) / 'h.png')\n"
            "print(before, matplotlib.get_backend(), plt.get_fignums())\n")
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(Path(plots.__file__).parents[2])}  # this source tree
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["svg", "svg", "[]"], out
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

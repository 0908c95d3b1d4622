"""Screenshot TensorBoard showing the runs under a folder, for the README (docs/tensorboard-screenshot.png).

    python scripts/tensorboard_screenshot.py LOGDIR [OUT_PNG]

Starts `tensorboard --logdir LOGDIR` on a free local port, waits until it lists the runs (at
least two), opens its Scalars dashboard (train loss, validation loss and accuracy, unsmoothed) in headless
Chromium (see tests/headless_browser.py),
stops TensorBoard and saves the PNG, trimmed of blank space. Nothing leaves the machine:
TensorBoard serves its page and scripts itself. Two runs to show, for example:

    mnistlab train --model mlp --epochs 4 --subset 12000 --log-every 20 --run-dir tb/mlp
    mnistlab train --model examples/lenet5.py:LeNet5 --lr 0.05 --epochs 4 --subset 12000 --log-every 20 \
        --run-dir tb/lenet5
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the browser helper
from tests.headless_browser import FLAGS, find_chromium  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_runs(url: str, need: int, timeout: float = 120) -> list[str]:
    """The runs TensorBoard lists once it has read at least `need` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=5) as r:
                runs = json.load(r)
            if len(runs) >= need:
                return runs
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"TensorBoard at {url} did not list {need} runs within {timeout:.0f} s")


def main(argv: list[str]) -> int:
    logdir = Path(argv[0])
    out = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "tensorboard-screenshot.png"
    )
    exe, tb = find_chromium(), shutil.which("tensorboard") or str(Path(sys.executable).parent / "tensorboard")
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [tb, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        runs = wait_for_runs(url, need=2)
        print(f"TensorBoard lists {len(runs)} runs: {', '.join(runs)}")
        with tempfile.TemporaryDirectory(prefix="mnistlab-chromium-") as profile:
            shot = Path(profile) / "page.png"
            # virtual time lets the page's scripts fetch and draw every chart before the shot
            subprocess.run(
                [
                    exe,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "--window-size=1400,760",
                    "--virtual-time-budget=30000",
                    f"--screenshot={shot}",
                    f"{url}/#scalars&_smoothingWeight=0&_ignoreYOutliers=false&tagFilter=train%2Floss%7Cval%2F",
                ],
                capture_output=True,
                timeout=180,
                check=True,
            )
            img = Image.open(shot).convert("RGB")
    finally:
        server.terminate()
        server.wait(timeout=30)
    pixels = np.asarray(img)
    rows = np.where((pixels < 245).any(axis=(1, 2)))[0]
    if len(rows) == 0:
        raise SystemExit("the screenshot is blank: TensorBoard's page did not render")
    img = img.crop((0, 0, img.width, min(img.height, int(rows.max()) + 16)))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"{out} ({img.width}x{img.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

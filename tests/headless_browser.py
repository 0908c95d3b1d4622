"""Headless Chromium, to look at a report as a person would: the DOM after load, and a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# no network at all: the report is self-contained, and a closed network makes Chromium's
# background services fail slowly
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def render(
    page: Path, screenshot: Path | None = None, width: int = 1200, height: int = 3000, timeout: float = 120
) -> str:
    """The page's DOM after its load event (and a PNG screenshot, if asked)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed")
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="mnistlab-chromium-") as profile:
        base = [exe, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        if screenshot is not None:
            subprocess.run(
                [*base, f"--screenshot={Path(screenshot).resolve()}", url],
                capture_output=True,
                timeout=timeout,
                check=True,
            )
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout, check=True)
    return dom.stdout

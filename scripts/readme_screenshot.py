"""Screenshot a lab report in headless Chromium for the README (docs/report-screenshot.png).

    python scripts/readme_screenshot.py LAB_DIR [OUT_PNG]

The whole page is rendered, trailing blank space trimmed, and the image halved in size.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mnistlab.report.headless_browser import render


def main(argv: list[str]) -> int:
    lab = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "report-screenshot.png"
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        dom = render(lab / "report.html", screenshot=shot, width=1100, height=12000)
        if 'data-broken-images="0"' not in dom:
            raise SystemExit("the report has broken images; not taking a screenshot of it")
        img = Image.open(shot).convert("RGB")
    rows = np.where((np.asarray(img) < 250).any(axis=(1, 2)))[0]
    img = img.crop((0, 0, img.width, int(rows.max()) + 24))
    img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    img.save(out, optimize=True)
    print(f"{out} ({img.width}x{img.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

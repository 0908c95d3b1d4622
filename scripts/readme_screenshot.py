"""Screenshot a lab report in headless Chromium for the README (docs/report-screenshot.png).

    python scripts/readme_screenshot.py LAB_DIR [OUT_PNG] [--whole]

By default the top of the report, as a reader first sees it: the answer sheet and the notebook's printed
numbers beside ours, up to the first question's section, at full size. --whole renders the whole page and
halves it. Trailing blank space is trimmed either way.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the browser helper
from tests.headless_browser import render  # noqa: E402

WIDTH = 1100  # about a laptop browser's content width (the report's text column is at most 1100 px)


def main(argv: list[str]) -> int:
    whole = "--whole" in argv
    args = [a for a in argv if a != "--whole"]
    lab = Path(args[0])
    out = Path(args[1]) if len(args) > 1 else Path(__file__).resolve().parents[1] / "docs" / "report-screenshot.png"
    page = (lab / "report.html").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        if not whole:  # the answer sheet and the reproduction table: the page up to the first question's heading
            first = re.search(r'<h2 id="q\d+">', page)
            if first is None:
                raise SystemExit("the report has no question section; nothing to cut at")
            page = page[: first.start()] + "</body></html>\n"
        html = Path(tmp) / "report.html"
        html.write_text(page, encoding="utf-8")
        shot = Path(tmp) / "page.png"
        dom = render(html, screenshot=shot, width=WIDTH, height=12000 if whole else 3000)
        if whole and 'data-broken-images="0"' not in dom:
            raise SystemExit("the report has broken images; not taking a screenshot of it")
        img = Image.open(shot).convert("RGB")
    rows = np.where((np.asarray(img) < 250).any(axis=(1, 2)))[0]
    img = img.crop((0, 0, img.width, int(rows.max()) + 24))
    if whole:
        img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    img.save(out, optimize=True)
    print(f"{out} ({img.width}x{img.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

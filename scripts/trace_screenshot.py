"""Screenshot a profiler trace opened in Chrome's trace viewer, for the README (docs/trace-screenshot.png).

    python scripts/trace_screenshot.py TRACE_JSON [OUT_PNG]

The viewer is catapult's trace viewer, the one behind `chrome://tracing`, in the copy that the PyPI package
torch-tb-profiler 0.4.3 bundles (torch_tb_profiler/static/trace_viewer_full.html). Recent Chromium no longer
has the Web Components v0 that it is written for, so the page loads it with the webcomponents.js 0.7.24
polyfill (npm package `webcomponents.js`), as torch-tb-profiler's own page does. Both are fetched with the
ordinary clients (`pip download`, `npm pack`) into a temporary folder, served with the trace from
127.0.0.1, and opened in headless Chromium through Playwright. The shot zooms the timeline on the trace's
second step (a full step, with its neighbours' edges), selects every operator in it, and sorts the table
below by self time. Nothing leaves the machine but the two package downloads.

Needs pip, npm (node), Chromium (apt-get install -y chromium) and Playwright with Pillow, which the project
does not depend on; Playwright's own browser download is not needed (the system Chromium is used):

    python -m venv /tmp/pw && /tmp/pw/bin/pip install playwright pillow
    mnistlab bench --models cnn --pipelines resident --devices cpu --steps 20 --repeats 2 --warmup 2 --trace bt
    /tmp/pw/bin/python scripts/trace_screenshot.py bt/*.trace.json

Not imported by the tests or CI.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the browser helper
from tests.headless_browser import find_chromium  # noqa: E402

TB_PROFILER = "torch-tb-profiler==0.4.3"
POLYFILL = "webcomponents.js@0.7.24"
WIDTH, HEIGHT = 1400, 800
TIMELINE_HEIGHT = 290  # px of the window kept for the timeline; the operator table gets the rest

# the page: the viewer as torch-tb-profiler's trace_embedding.html builds it, the trace fetched from our server
PAGE = """<!DOCTYPE html>
<head>
<script src="webcomponents.min.js"></script>
<link rel="import" href="trace_viewer_full.html">
<style>html, body { margin: 0; padding: 0; width: 100%; height: 100%; overflow: hidden; }
#trace-viewer { width: 100%; height: 100%; }</style>
<script>
window.__hideTraceViewerPolyfillWarning = true;
document.addEventListener('WebComponentsReady', async function () {
  const container = document.createElement('track-view-container');
  container.id = 'track_view_container';
  const viewer = document.createElement('tr-ui-timeline-view');
  viewer.track_view_container = container;
  Polymer.dom(viewer).appendChild(container);
  viewer.id = 'trace-viewer';
  viewer.globalMode = true;
  Polymer.dom(document.body).appendChild(viewer);
  const text = await (await fetch('TRACE_NAME')).text();
  const model = new tr.Model();
  await new tr.importer.Import(model).importTracesWithProgressDialog([text]);
  viewer.model = model;
  viewer.viewTitle = 'TRACE_NAME';
  window.traceLoaded = true;
});
</script>
</head><body></body></html>
"""

# zoom on the second ProfilerStep (15 % margin either side) and select every slice inside it
FOCUS_STEP = """() => {
  const viewer = document.getElementById('trace-viewer');
  const slices = [...viewer.model.getAllThreads()].flatMap(t => t.sliceGroup.slices);
  const steps = slices.filter(s => s.title.startsWith('ProfilerStep#')).sort((a, b) => a.start - b.start);
  if (steps.length < 2) return null;
  const step = steps[1];
  const inside = slices.filter(s => s.start >= step.start && s.end <= step.end);
  viewer.brushingStateController.changeSelectionFromTimeline(new tr.model.EventSet(inside));
  const viewport = viewer.trackView.viewport;
  const pad = 0.15 * step.duration;
  const transform = new tr.ui.TimelineDisplayTransform();
  transform.xSetWorldBounds(step.start - pad, step.end + pad, viewport.modelTrackContainer.canvas.clientWidth);
  viewport.setDisplayTransformImmediately(transform);
  return [step.title, step.duration, inside.length];
}"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def fetch_viewer(site: Path) -> None:
    """trace_viewer_full.html from torch-tb-profiler's wheel and webcomponents.min.js from the npm package."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp, TB_PROFILER],
            check=True,
            capture_output=True,
        )
        (wheel,) = Path(tmp).glob("torch_tb_profiler-*.whl")
        with zipfile.ZipFile(wheel) as z:
            (site / "trace_viewer_full.html").write_bytes(z.read("torch_tb_profiler/static/trace_viewer_full.html"))
        subprocess.run(["npm", "pack", POLYFILL, "--pack-destination", tmp], check=True, capture_output=True)
        (tgz,) = Path(tmp).glob("webcomponents.js-*.tgz")
        with tarfile.open(tgz) as t:
            member = t.extractfile("package/webcomponents.min.js")
            if member is None:
                raise SystemExit(f"{tgz.name} has no webcomponents.min.js")
            (site / "webcomponents.min.js").write_bytes(member.read())


def main(argv: list[str]) -> int:
    trace = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "trace-screenshot.png"
    exe = find_chromium()
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="mnistlab-trace-") as tmp:
        site = Path(tmp)
        fetch_viewer(site)
        shutil.copyfile(trace, site / "trace.json")
        (site / "view.html").write_text(PAGE.replace("TRACE_NAME", "trace.json"), encoding="utf-8")
        handler = functools.partial(QuietHandler, directory=str(site))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/view.html")
                page.wait_for_function("window.traceLoaded === true", timeout=120_000)
                page.wait_for_timeout(1000)  # the viewer's own first fit-to-trace comes after the load
                focused = page.evaluate(FOCUS_STEP)
                if focused is None:
                    raise SystemExit(f"{trace} has fewer than two ProfilerStep slices")
                print(f"{focused[0]}: {focused[1]:.1f} ms, {focused[2]} slices selected")
                # drag the divider between the timeline and the table up, to give the table more rows
                boxes = [h.bounding_box() for h in page.locator("tr-ui-b-drag-handle").all()]
                handle = next((b for b in boxes if b is not None and b["width"] > b["height"]), None)
                if handle is not None:  # the horizontal one; a vertical one is beside the side panel
                    y = handle["y"] + handle["height"] / 2
                    page.mouse.move(WIDTH / 2, y)
                    page.mouse.down()
                    page.mouse.move(WIDTH / 2, TIMELINE_HEIGHT, steps=10)
                    page.mouse.up()
                header = page.get_by_text("Self time", exact=True).first
                header.click()  # ascending
                header.click()  # descending
                page.wait_for_timeout(1000)
                png = page.screenshot()
                browser.close()
        finally:
            server.shutdown()
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"{out} ({img.width}x{img.height}, {out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

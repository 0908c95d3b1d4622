"""The example notebook, run as a user runs it: in a Jupyter kernel (small settings, tiny data),
then rendered to HTML and looked at in headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from tests.conftest import write_tiny_dataset
from tests.headless_browser import find_chromium, render

SRC = Path(__file__).resolve().parents[1] / "src"
NOTEBOOK = SRC.parent / "examples" / "intro_to_training.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"
# after load, the page counts its images and those that failed to decode (as the report does)
COUNT_IMAGES = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute("data-images", imgs.length);
  document.body.setAttribute("data-broken-images", broken);
});
</script>"""


def _tiny_dataset_file(tmp_path: Path) -> Path:
    """The tiny dataset as a row of $MNISTLAB_DATASETS_FILE: the kernel is another process, so the
    in-process `tiny` fixture cannot reach it."""
    spec = write_tiny_dataset(tmp_path / "data", name="tinynb")
    row = {k: v for k, v in dataclasses.asdict(spec).items() if k != "image_size"}
    row["classes"], row["mirrors"] = list(spec.classes), []
    path = tmp_path / "datasets.json"
    path.write_text(json.dumps([row]))
    return path


@pytest.fixture(scope="module")
def notebook_dir(tmp_path_factory) -> Path:
    """The folder the notebook runs in, as examples/ is when you open it in Jupyter."""
    return tmp_path_factory.mktemp("notebook")


@pytest.fixture(scope="module")
def executed(notebook_dir) -> nbformat.NotebookNode:
    """The notebook after a headless run in a kernel, quick settings, in a folder of its own."""
    tmp = notebook_dir
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this environment
        mp.setenv("MNISTLAB_QUICK", "1")
        mp.setenv("MNISTLAB_DATASET", "tinynb")
        mp.setenv("MNISTLAB_DATASETS_FILE", str(_tiny_dataset_file(tmp)))
        mp.setenv("MNISTLAB_DATA", str(tmp / "data"))
        mp.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))  # this source tree
        mp.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU plan, whatever the machine: the GPU cells say so
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    text = "\n".join(c.source for c in nb.cells)
    for question in range(1, 10):  # every question of the course notebook
        assert f"Question {question}" in text or f"Questions {question}" in text or f"and {question}:" in text, question


@pytest.mark.slow
def test_the_notebook_runs_in_a_kernel_with_figures_inline_and_clean_progress(executed):
    outputs = _outputs(executed)
    assert not [o for o in outputs if o.output_type == "error"]
    stderr = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stderr")
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    assert not [o.text for o in outputs if o.output_type == "stream" and "\r" in o.text]  # no redraw spam
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # first sample, loss x2, epoch times, bench, CNN
    tables = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) >= 5 and all(t.startswith("<table>") for t in tables)  # runs, test result, bench, profiles
    train_cell = next(c for c in executed.cells if "mlp = mnistlab.train_run(cfg)" in c.source)
    assert [o for o in train_cell.outputs if WIDGET in o.get("data", {})]  # tqdm.auto's widget bar
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/html", "") for o in outputs)
    assert "109,386" in text and "454,400" in text and "no GPU here" in text and "validation loss" in text
    # the notebook's own printed numbers beside the runs' (issue 28): quoted, measured, each difference explained
    assert "printed figures beside ours" in text and "0.0598 (step 0)" in text and "97.61%" in text


@pytest.mark.slow
@pytest.mark.skipif(not (SRC.parent / ".git").exists(), reason="not a git checkout (an sdist): no .gitignore to check")
def test_what_the_notebook_writes_beside_itself_git_ignores(executed, notebook_dir):
    """Run where it lies (examples/), the notebook leaves its runs there: git ignores them all."""
    ours = {"data", "datasets.json"}  # the test's own tiny dataset
    written = [
        p.relative_to(notebook_dir)
        for p in notebook_dir.rglob("*")
        if p.is_file() and p.relative_to(notebook_dir).parts[0] not in ours
    ]
    assert written and {p.parts[0] for p in written} == {"runs"}
    paths = [f"examples/{p.as_posix()}" for p in written]
    p = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=SRC.parent,
        input="\n".join(paths),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sorted(p.stdout.split()) == sorted(paths), f"not ignored: {sorted(set(paths) - set(p.stdout.split()))}"


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.slow
def test_the_executed_notebook_in_a_real_browser(executed, tmp_path):
    body, _ = HTMLExporter().from_notebook_node(executed)
    page = tmp_path / "notebook.html"
    page.write_text(body.replace("</body>", COUNT_IMAGES + "</body>"))
    shot = Path(os.environ.get("MNISTLAB_NOTEBOOK_SCREENSHOT", tmp_path / "notebook.png"))
    dom = render(page, screenshot=shot, height=9000)
    tag = re.search(r"<body[^>]*>", dom).group(0)
    n_img = len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", body))
    assert n_img >= 6 and f'data-images="{n_img}"' in tag and 'data-broken-images="0"' in tag, tag
    text = re.sub(r"<[^>]+>", " ", dom)
    assert "Question 9" in text and "109,386" in text
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""The lab end to end on tiny data, the report rebuilt from its directory, and a real browser's view of it."""

import re

import pytest

from mnistlab.report.headless_browser import find_chromium, render
from mnistlab.cli import main
from mnistlab.lab import run_lab
from mnistlab.core.rundir import open_run


@pytest.fixture
def lab_dir(tiny, tmp_path):
    page = run_lab(quick=True, device="cpu", out=tmp_path / "lab", dataset="tiny", log=lambda m: None, progress=False)
    return page.parent


def test_lab_writes_runs_and_both_reports(lab_dir):
    assert {p.name for p in lab_dir.iterdir()} >= {"lab.json", "mlp-cpu", "cnn-cpu", "bench", "report.md",
                                                    "report.html", "figures", "first-sample.png"}
    mlp = open_run(lab_dir / "mlp-cpu")
    assert [int(r["session"]) for r in mlp.metrics()] == [1] * 5 + [2] * 5  # 5 epochs, resumed for 5 more
    md = (lab_dir / "report.md").read_text()
    assert "quick run" in md and "109,386" in md and "454,400" in md and "MACs" in md
    acc = mlp.test()["accuracy"]
    assert f"{acc:.2%}" in md
    assert "mlp-cpu-loss-5.png" in md and "mlp-cpu-loss.png" in md  # after 5 and after 10 epochs
    assert "validation loss" in md and "of each step is" in md and "no GPU on this machine" in md
    html = (lab_dir / "report.html").read_text()
    assert 'src="data:image/png;base64,' in html and 'src="figures' not in html and "http" not in html.split("<body")[1]


def test_report_is_rebuilt_without_training(lab_dir, capsys):
    before = (lab_dir / "report.md").read_text()
    (lab_dir / "report.md").unlink()
    assert main(["report", str(lab_dir)]) == 0
    assert (lab_dir / "report.md").read_text() == before
    out = lab_dir / "custom"
    assert main(["report", str(lab_dir / "mlp-cpu"), str(lab_dir / "bench"), "--out", str(out)]) == 0
    assert "mlp-cpu" in (out / "report.md").read_text()
    capsys.readouterr()
    assert main(["report", str(lab_dir / "figures")]) == 2
    assert "neither a run directory" in capsys.readouterr().err


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_in_a_real_browser(lab_dir, tmp_path):
    shot = tmp_path / "report.png"
    dom = render(lab_dir / "report.html", screenshot=shot)
    n_img = (lab_dir / "report.html").read_text().count("<img ")
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-images="{n_img}"' in body and 'data-broken-images="0"' in body, body
    acc = open_run(lab_dir / "mlp-cpu").test()["accuracy"]
    text = re.sub(r"<[^>]+>", " ", dom)
    for number in (f"{acc:.2%}", "109,386", "101,578", "454,400"):
        assert number in text
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def _fake_run(path, model, device, val_losses, train_seconds):
    from mnistlab.training.config import TrainConfig
    from mnistlab.core.rundir import METRIC_FIELDS, RunDir, write_csv, write_json

    path.mkdir(parents=True)
    write_json(path / "config.json", TrainConfig(model=model, device="cpu").to_dict())
    write_json(path / "env.json", {"device": device})
    rows = [{"epoch": i + 1, "train_loss": 0.5 / (i + 1), "val_loss": v, "val_accuracy": 0.9, "train_seconds": t,
             "val_seconds": 0.1, "epoch_seconds": t + 0.1, "samples_per_s": 1000, "steps": 10,
             "global_step": 10 * (i + 1), "session": 1} for i, (v, t) in enumerate(zip(val_losses, train_seconds))]
    write_csv(path / "metrics.csv", METRIC_FIELDS, rows)
    return RunDir(path)


def test_observations_follow_the_numbers(tmp_path):
    from mnistlab.report.builder import device_comparisons, training_observations

    falling = _fake_run(tmp_path / "a", "mlp", "cpu", [0.5, 0.4, 0.3, 0.2], [2.0] * 4)
    assert "still falling at the last epoch" in training_observations(falling)[0]
    turned = _fake_run(tmp_path / "b", "mlp", "cuda:0", [0.5, 0.3, 0.35, 0.4], [0.5] * 4)
    notes = training_observations(turned)
    assert "lowest at epoch 2" in notes[0] and "early stopping" in notes[0]
    assert "started to overfit" in notes[1]  # 0.4 against 0.125
    (line,) = device_comparisons([falling, turned])
    assert line == "mlp: an epoch on cuda took 0.50 s against 2.00 s on the CPU: cuda is 4.0x faster."

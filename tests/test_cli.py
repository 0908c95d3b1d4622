"""The CLI, in-process: every command, and bad input as exit code 2 with one line."""

import json

import pytest
import torch

from mnistlab.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("mnistlab") and "Traceback" not in err


def test_env(capsys):
    code, out, _ = run_cli(capsys, "env")
    assert code == 0 and torch.__version__ in out and "CUDA available" in out and "threads" in out


def test_summary(capsys):
    code, out, _ = run_cli(capsys, "summary", "cnn")
    assert code == 0 and "101,578" in out and "net.0.weight" in out and "[32, 1, 3, 3]" in out


def test_data_commands(tiny, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "fetch", "--dataset", "tiny")
    assert code == 0 and out.strip().endswith("raw")
    code, out, _ = run_cli(capsys, "data", "info", "--dataset", "tiny", "--json")
    info = json.loads(out)
    assert code == 0 and info["train_samples"] == 640 and sum(info["train_label_counts"]) == 640
    assert info["image_shape"] == [28, 28] and info["stored_dtype"] == "uint8"
    code, out, _ = run_cli(capsys, "data", "show", "--dataset", "tiny", "--out", str(tmp_path / "s.png"), "--count", "8")
    assert code == 0 and (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_eval_plot_resume(tiny, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", "--dataset", "tiny", "--epochs", "2", "--device", "cpu", "--no-progress",
                           "--run-dir", str(tmp_path / "r"))
    assert code == 0 and out.strip().splitlines()[-1] == str(tmp_path / "r")
    assert "epoch 2/2" in out and "test: loss" in out
    code, out, _ = run_cli(capsys, "train", "--resume", str(tmp_path / "r"), "--epochs", "1", "--no-progress")
    assert code == 0 and "resuming" in out and "epoch 3/3" in out
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r"), "--device", "cpu")
    assert code == 0 and "confusion matrix" in out and "per-class accuracy" in out
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r"), "--checkpoint", "best", "--json")
    assert code == 0 and json.loads(out)["total"] == 200
    run_cli(capsys, "train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "r2"))
    code, out, _ = run_cli(capsys, "plot", str(tmp_path / "r"), str(tmp_path / "r2"))
    assert code == 0 and out.strip() == str(tmp_path / "r" / "compare.png")


@pytest.mark.parametrize("argv, words", [
    (["train", "--model", "resnet"], "unknown model"),
    (["train", "--batch-size", "0"], "must be at least 1"),
    (["train", "--epochs", "-2"], "must be at least 1"),
    (["train", "--epochs", "two"], "expected a whole number"),
    (["train", "--val-fraction", "1.5", "--dataset", "tiny"], "val fraction must be strictly between 0 and 1"),
    (["train", "--val-fraction", "0", "--dataset", "tiny"], "val fraction"),
    (["train", "--lr", "abc"], "expected a number"),
    (["train", "--lr", "-1", "--dataset", "tiny"], "learning rate"),
    (["train", "--dataset", "cifar"], "unknown dataset"),
    (["train", "--device", "tpu"], "invalid choice"),
    (["train", "--resume", "no/such/run"], "no such run directory"),
    (["eval", "no/such/run"], "no such run directory"),
    (["plot", "no/such/run"], "no such run directory"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
])
def test_bad_input_is_one_line_and_exit_2(tiny, capsys, argv, words):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    _, err = capsys.readouterr()
    assert code == 2 and words in err and one_line_error(err), err


def test_missing_checkpoint_and_corrupt_data(tiny, capsys, tmp_path):
    spec, root = tiny
    run_cli(capsys, "train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "r"))
    (tmp_path / "r" / "best.pt").unlink()
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "r"), "--checkpoint", "best")
    assert code == 2 and "checkpoint not found" in err and one_line_error(err)
    img = spec.raw_dir(root) / spec.train_images.name
    img.write_bytes(img.read_bytes()[:1000])
    code, _, err = run_cli(capsys, "train", "--dataset", "tiny", "--no-progress")
    assert code == 2 and str(img) in err and "truncated" in err and one_line_error(err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_machine_without_it(tiny, capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", "tiny", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err and one_line_error(err)

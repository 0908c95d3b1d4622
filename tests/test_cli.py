"""The CLI, in-process: every command, and bad input as exit code 2 with one line."""

import json
import os
import re
import stat

import pytest
import torch

from mnistlab.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("mnistlab: error: ") and "Traceback" not in err


def test_env(capsys):
    code, out, _ = run_cli(capsys, "env")
    assert (
        code == 0
        and torch.__version__ in out
        and "CUDA available" in out
        and re.search(r"torch uses \d+ threads?\b", out)
    )


def test_summary(capsys):
    code, out, _ = run_cli(capsys, "summary", "cnn")
    assert code == 0 and "101,578" in out and "net.0.weight" in out and "[32, 1, 3, 3]" in out
    table = out.split("state_dict:\n")[1].split("\nparameters:")[0].splitlines()
    assert len({len(ln) for ln in table}) == 1, table  # the counts' column is right-aligned under its header
    assert len({ln.index("[") for ln in table[1:]}) == 1  # shapes start in one column


def test_every_option_has_help_text():
    import argparse

    from mnistlab.cli import build_parser

    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub_name, sub in a.choices.items():
                    yield from walk(sub, f"{name} {sub_name}")
            elif not isinstance(a, argparse._HelpAction):
                yield name, a

    missing = [f"{name} {a.option_strings or a.dest}" for name, a in walk(build_parser(), "mnistlab") if not a.help]
    assert not missing, missing


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["profile", "mlp", "--json"]) == 141
    monkeypatch.undo()
    assert capsys.readouterr().err == ""


def test_data_commands(tiny, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "fetch", "--dataset", "tiny")
    assert code == 0 and out.strip().endswith("raw")
    code, out, _ = run_cli(capsys, "data", "info", "--dataset", "tiny", "--json")
    info = json.loads(out)
    assert code == 0 and info["train_samples"] == 640 and sum(info["train_label_counts"]) == 640
    assert info["image_shape"] == [28, 28] and info["stored_dtype"] == "uint8"
    code, out, _ = run_cli(capsys, "data", "info", "--dataset", "tiny")
    hist = out.split("label histogram:\n")[1].splitlines()
    assert hist[0].split() == ["class", "train", "test"] and hist[4].split()[0] == "3" and len(hist[4].split()) == 3
    old = os.umask(0o022)
    try:
        code, out, _ = run_cli(
            capsys, "data", "show", "--dataset", "tiny", "--out", str(tmp_path / "s.png"), "--count", "8"
        )
    finally:
        os.umask(old)
    assert code == 0 and (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE((tmp_path / "s.png").stat().st_mode) == 0o644  # the umask's mode, not 0600
    code, _, err = run_cli(capsys, "data", "show", "--dataset", "tiny", "--out", str(tmp_path / "no" / "dir" / "s.png"))
    assert code == 2 and "no such directory" in err and one_line_error(err) and not (tmp_path / "no").exists()


@pytest.mark.slow
def test_train_eval_plot_resume(tiny, capsys, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "train",
        "--dataset",
        "tiny",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "r"),
    )
    assert code == 0 and out.strip().splitlines()[-1] == str(tmp_path / "r")
    assert "epoch 2/2" in out and "test: loss" in out
    code, out, err = run_cli(capsys, "train", "--resume", str(tmp_path / "r"), "--epochs", "1", "--no-progress")
    assert code == 0 and "resuming" in out and "epoch 3/3" in out
    assert "epoch times: first epoch of each of 2 sessions" in err and "cold" not in err and "steady state" in err
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["load_start"]["cpu_count"] >= 1 and env["load_end"]["time"] >= env["load_start"]["time"]
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r"), "--device", "cpu")
    assert code == 0 and "confusion matrix" in out and "per-class accuracy" in out
    per_class = out.split("per-class accuracy:\n")[1].splitlines()[:10]
    assert [ln.split()[0] for ln in per_class] == [str(i) for i in range(10)]
    assert all(len(ln.split()) == 2 for ln in per_class)  # "3  97.00%", not "3 3  97.00%"
    code, out, _ = run_cli(capsys, "eval", str(tmp_path / "r"), "--checkpoint", "best", "--json")
    assert code == 0 and json.loads(out)["total"] == 200
    run_cli(capsys, "train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "r2"))
    run_files = sorted((tmp_path / "r").iterdir())
    code, out, _ = run_cli(capsys, "plot", str(tmp_path / "r"))  # readers write into the current directory
    assert code == 0 and out.strip() == "r-loss.png" and (tmp_path / "r-loss.png").is_file()
    code, out, _ = run_cli(capsys, "plot", str(tmp_path / "r"), str(tmp_path / "r2"))
    assert code == 0 and out.strip() == "compare.png" and (tmp_path / "compare.png").is_file()
    assert sorted((tmp_path / "r").iterdir()) == run_files


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--model", "resnet"], "unknown model"),
        (["train", "--batch-size", "0"], "must be at least 1"),
        (["train", "--epochs", "-2"], "must be at least 1"),
        (["train", "--epochs", "two"], "expected a whole number"),
        (
            ["train", "--val-fraction", "1.5", "--dataset", "tiny"],
            "val_fraction must be a number strictly between 0 and 1",
        ),
        (["train", "--val-fraction", "0", "--dataset", "tiny"], "val_fraction must be"),
        (["train", "--lr", "abc"], "expected a number"),
        (["train", "--lr", "-1", "--dataset", "tiny"], "lr must be"),
        (["train", "--dataset", "cifar"], "unknown dataset"),
        (["train", "--device", "tpu"], "invalid choice"),
        (["train", "--resume", "no/such/run"], "no such run directory"),
        (["eval", "no/such/run"], "no such run directory"),
        (["plot", "no/such/run"], "no such run directory"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
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


@pytest.mark.parametrize(
    "argv, where",
    [
        (["train", "--epoch", "1"], "mnistlab train --help"),
        (["bench", "--models", "mlp", "--wat"], "mnistlab bench --help"),
        (["speedrun", "extra"], "mnistlab speedrun --help"),
    ],
)
def test_an_unknown_option_points_at_the_subcommands_help(argv, where, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "unrecognized arguments" in err and f"(see: {where})" in err


def test_threads_left_running_are_not_all_blamed_on_the_model(capsys, monkeypatch):
    """`speedrun --compile default` with the built-in speednet left torch.compile's ThreadPoolExecutor running,
    and the warning said 'started by the model's code': it names torch.compile's workers as the other source."""
    import threading

    from mnistlab import cli

    exits = []
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    before = set(threading.enumerate())
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="ThreadPoolExecutor-1_0")
    t.start()
    try:
        cli._exit_if_threads_left(before, 0)
    finally:
        stop.set()
        t.join()
    err = capsys.readouterr().err
    assert exits == [0] and "not waiting for 1 thread(s) still running (ThreadPoolExecutor-1_0" in err
    assert "torch.compile" in err and "started by the model's code)" not in err

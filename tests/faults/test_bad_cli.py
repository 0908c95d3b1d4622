"""Every option's out-of-range, wrong-type and missing values; unknown names; impossible resumes.
In-process (the CLI's main), so that a few hundred cases stay fast."""

from __future__ import annotations

import pytest
import torch

from mnistlab.cli import build_parser, main

# option -> (wrong type, out of range) for each command; None where an option has no range
OPTIONS = {
    "train": {
        "--epochs": ("ten", "0"),
        "--batch-size": ("1.5", "0"),
        "--lr": ("fast", "-0.1"),
        "--momentum": ("x", "1.5"),
        "--val-fraction": ("half", "1.0"),
        "--seed": ("s", "-1"),
        "--early-stop": ("y", "0"),
        "--subset": ("z", "0"),
        "--max-steps": ("w", "0"),
        "--log-every": ("often", "0"),
        "--threads": ("all", "0"),
        "--dist-timeout": ("soon", "0"),
        "--checkpoint-every": ("often", "0"),
        "--trace": (None, "/dev/null"),  # not a folder
        "--model": (None, "resnet"),
        "--dataset": (None, "cifar10"),
        "--device": (None, "tpu"),
        "--precision": (None, "fp8"),
        "--compile": (None, "fast"),
    },
    "bench": {
        "--steps": ("many", "-1"),
        "--repeats": ("r", "0"),
        "--warmup": ("w", "-2"),
        "--batch-size": ("b", "0"),
        "--models": (None, "vit"),
        "--devices": (None, "auto"),
        "--pipelines": (None, "dali"),
        "--dataset": (None, "svhn"),
        "--implementations": (None, "xla"),
        "--threads": ("all", "0"),
        "--trace": (None, "/dev/null"),
    },
    "speedrun": {
        "--seeds": ("many", "0"),
        "--target": ("high", "101"),
        "--precision": (None, "fp8"),
        "--compile": (None, "fast"),
        "--device": (None, "tpu"),
        "--dataset": (None, "svhn"),
        "--threads": ("all", "0"),
    },
    "profile": {"--batch-size": ("one", "0")},
    "summary": {"--batch-size": ("one", "0")},
    "lab": {"--device": (None, "tpu")},
    "eval": {"--checkpoint": (None, "middle"), "--device": (None, "npu")},
    "data show": {"--count": ("all", "0"), "--dataset": (None, "emnist")},
}
POSITIONAL = {"profile": ["mlp"], "summary": ["mlp"], "eval": ["some/run"]}


def _cases():
    for command, options in OPTIONS.items():
        for opt, (wrong_type, out_of_range) in options.items():
            base = command.split() + POSITIONAL.get(command, [])
            yield f"{command} {opt} (missing value)", [*base, opt]
            if wrong_type is not None:
                yield f"{command} {opt} {wrong_type} (wrong type)", [*base, opt, wrong_type]
            yield f"{command} {opt} {out_of_range} (out of range)", [*base, opt, out_of_range]


CASES = dict(_cases())


def exit_code_and_err(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_option(tiny, capsys, reliability, name):
    code, err = exit_code_and_err(CASES[name], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    kind = {
        "missing value": "no value",
        "wrong type": "a value of the wrong type",
        "out of range": "a value out of range",
    }[name[name.rindex("(") + 1 : -1]]
    reliability.record(
        "Command line",
        f"an option given {kind} (every numeric and choice option of "
        f"train, bench, profile, summary, lab, eval, data show)",
        "clear error (exit 2, one line)",
    )


def test_every_train_option_is_covered():
    train = build_parser()._subparsers._group_actions[0].choices["train"]  # noqa: SLF001
    valued = {
        a.option_strings[0]
        for a in train._actions
        if a.option_strings
        and a.nargs != 0  # noqa: SLF001
        and a.option_strings[0] not in ("--data-dir", "--run-dir", "--resume", "-h")
    }
    assert valued <= set(OPTIONS["train"]), valued - set(OPTIONS["train"])


def test_unknown_command_and_no_command(capsys, reliability):
    for argv in (["frobnicate"], []):
        code, err = exit_code_and_err(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1
    reliability.record("Command line", "unknown command, or none", "clear error (exit 2, one line)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--dataset", "tiny", "--device", "cuda"],
        ["bench", "--devices", "cuda"],
        ["lab", "--device", "cuda"],
        ["eval", "some/run", "--device", "cuda"],
    ],
)
@pytest.mark.slow
def test_cuda_requested_without_cuda(tiny, tmp_path, capsys, reliability, argv):
    if argv[0] == "eval":
        argv = ["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "r")]
        assert main(argv) == 0
        capsys.readouterr()
        argv = ["eval", str(tmp_path / "r"), "--device", "cuda"]
    code, err = exit_code_and_err(argv, capsys)
    assert code == 2 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1, err
    reliability.record("Command line", "`--device cuda` on a machine without CUDA", "clear error (exit 2, one line)")


@pytest.mark.slow
def test_resume_with_other_model_and_resume_finished(tiny, tmp_path, capsys, reliability):
    run = str(tmp_path / "r")
    assert main(["train", "--dataset", "tiny", "--epochs", "1", "--no-progress", "--run-dir", run]) == 0
    capsys.readouterr()
    code, err = exit_code_and_err(["train", "--resume", run, "--model", "cnn", "--epochs", "1"], capsys)
    assert code == 2 and "cannot resume with model='cnn'" in err
    reliability.record("Command line", "resuming a run with a different model", "clear error (exit 2, one line)")
    code, err = exit_code_and_err(["train", "--resume", run], capsys)
    assert code == 2 and "already finished (1 epoch); pass --epochs N" in err
    reliability.record("Command line", "resuming a finished run without --epochs", "clear error (exit 2, one line)")
    code, err = exit_code_and_err(["train", "--resume", run, "--run-dir", run], capsys)
    assert code == 2 and "cannot be used together" in err


def test_data_show_count_is_capped(tiny, capsys, reliability):
    code, err = exit_code_and_err(["data", "show", "--dataset", "tiny", "--count", "4000"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--count: must be at most 256, got 4000" in err, err
    reliability.record("Resource bounds", "`data show --count 4000`", "clear error at once (at most 256)")


CAPPED = [  # every size a user can ask for has a bound, said in one line before any work
    (["summary", "mlp", "--batch-size", "100000000"], "--batch-size: must be at most 65536"),
    (["profile", "mlp", "--batch-size", "100000000"], "--batch-size: must be at most 65536"),
    (["bench", "--steps", "10000000"], "--steps: must be at most 100000"),
    (["bench", "--warmup", "10000000"], "--warmup: must be at most 100000"),
    (["bench", "--repeats", "1000"], "--repeats: must be at most 100"),
    (["bench", "--batch-size", "100000000"], "--batch-size: must be at most 65536"),
    (["speedrun", "--seeds", "100000"], "--seeds: must be at most 1000"),
    (["sweep", "--study", "s", "--trials", "1000000", "--param", "lr=0.01:0.1"], "--trials: must be at most 10000"),
    (["train", "--dataset", "tiny", "--batch-size", "100000000"], "batch_size must be a whole number in 1..65,536"),
]


@pytest.mark.parametrize("argv, words", CAPPED)
def test_every_size_a_user_can_ask_for_is_capped(tiny, capsys, reliability, argv, words):
    code, err = exit_code_and_err(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and words in err, err
    reliability.record("Resource bounds", f"`{' '.join(argv[:1] + argv[-2:])}`", "clear error at once")


def test_an_abbreviated_option_is_a_typo_not_a_guess(tiny, capsys, reliability):
    code, err = exit_code_and_err(["train", "--dataset", "tiny", "--epoch", "1"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--epoch" in err, err
    reliability.record("Command line", "`train --epoch 1` (a prefix of --epochs)", "clear error, never guessed")

"""Every number read back has a range, through the one validator (core/schema.py): bench.json, levers.json,
scaling.json, test.json, trials.json, sweep.json, speedrun.json, config.json as the report reads it, and a
checkpoint's optimizer fields. A value out of its range is one line naming the file and the field, never a
traceback or a figure printed as a fact. And a run's config.json cannot send a resume's writes elsewhere."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest
import torch

from mnistlab.cli import main
from mnistlab.data import datasets
from mnistlab.measure.scaling import ScalingCell, ScalingResult
from tests.conftest import tiny_sweep_argv, tiny_train_argv, write_tiny_dataset

from .conftest import one_line_error

pytestmark = pytest.mark.slow  # a run, two benches, a speedrun and a sweep, once for the module

HUGE = 10**400


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One of each folder the report reads, made by the real commands (scaling.json written from its result)."""
    pytest.importorskip("optuna")
    base = tmp_path_factory.mktemp("ranges")
    bench = [
        "--models",
        "mlp",
        "--devices",
        "cpu",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--dataset",
        "tiny",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(datasets.DATASETS, "tiny", write_tiny_dataset(base / "data"))
        mp.setenv("MNISTLAB_DATA", str(base / "data"))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            for argv in (
                tiny_train_argv(base / "run"),
                ["bench", *bench, "--pipelines", "resident", "--out", str(base / "bench")],
                ["bench", *bench, "--implementations", "eager", "--out", str(base / "levers")],
                ["speedrun", "--dataset", "tiny", "--seeds", "1", "--device", "cpu", "--out", str(base / "speedrun")],
                tiny_sweep_argv("--out", str(base / "sweep")),
            ):
                assert main(argv) == 0, argv
    (base / "scaling").mkdir()
    cells = [ScalingCell("mlp", "cpu", n, 64, [0.01, 0.011], [0.009, 0.01], 437_544) for n in (1, 2)]
    (base / "scaling" / "scaling.json").write_text(json.dumps(ScalingResult(cells, {}).to_dict()))
    return base


def _set(data, path, value):
    *head, last = path
    for key in head:
        data = data[key]
    data[last] = value


# (folder, file, field path, value, words the line must hold)
CASES = {
    "bench.json: a 400-digit train_step_flops": (
        "bench",
        "bench.json",
        ["cells", 0, "train_step_flops"],
        HUGE,
        "train_step_flops",
    ),
    "bench.json: peak_flops_per_s 0": ("bench", "bench.json", ["cells", 0, "peak_flops_per_s"], 0, "peak_flops_per_s"),
    "bench.json: batch_size -64": ("bench", "bench.json", ["cells", 0, "batch_size"], -64, "batch_size"),
    "bench.json: a step of -1 s": ("bench", "bench.json", ["cells", 0, "step_s"], [-1.0], "step_s"),
    "bench.json: settings' batch_size -64": ("bench", "bench.json", ["settings", "batch_size"], -64, "batch_size"),
    "levers.json: a 400-digit train_step_flops": (
        "levers",
        "levers.json",
        ["cells", 0, "train_step_flops"],
        HUGE,
        "train_step_flops",
    ),
    "levers.json: batch_size -64": ("levers", "levers.json", ["cells", 0, "batch_size"], -64, "batch_size"),
    "levers.json: peak_flops_per_s -1": (
        "levers",
        "levers.json",
        ["cells", 0, "peak_flops_per_s"],
        -1,
        "peak_flops_per_s",
    ),
    "scaling.json: global_batch -64": ("scaling", "scaling.json", ["cells", 0, "global_batch"], -64, "global_batch"),
    "scaling.json: a step of 0 s": ("scaling", "scaling.json", ["cells", 1, "step_s"], [0], "step_s"),
    "scaling.json: a 400-digit gradient_bytes": (
        "scaling",
        "scaling.json",
        ["cells", 0, "gradient_bytes"],
        HUGE,
        "gradient_bytes",
    ),
    "test.json: accuracy 5": ("run", "test.json", ["accuracy"], 5, "accuracy"),
    "test.json: loss -1": ("run", "test.json", ["loss"], -1, "loss"),
    "config.json: batch_size -64": ("run", "config.json", ["batch_size"], -64, "batch_size"),
    "config.json: a 400-digit epochs": ("run", "config.json", ["epochs"], HUGE, "epochs"),
    "config.json: lr as text": ("run", "config.json", ["lr"], "x", "lr"),
    "speedrun.json: an accuracy of 500%": ("speedrun", "speedrun.json", ["runs", 0, "accuracy"], 500, "accuracy"),
    "speedrun.json: a 400-digit step FLOPs": ("speedrun", "speedrun.json", ["flops", "step"], HUGE, "step"),
    "trials.json: best_val_accuracy 5": ("sweep", "trials.json", [0, "best_val_accuracy"], 5, "best_val_accuracy"),
    "trials.json: epochs -1": ("sweep", "trials.json", [0, "epochs"], -1, "epochs"),
    "sweep.json: trials -1": ("sweep", "sweep.json", ["trials"], -1, "trials"),
    "sweep.json: a 400-digit grace": ("sweep", "sweep.json", ["grace"], HUGE, "grace"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_number_out_of_its_range_is_one_line_naming_file_and_field(
    folders, tiny, tmp_path, capsys, reliability, case
):
    folder, name, path, value, words = CASES[case]
    copy = shutil.copytree(folders / folder, tmp_path / folder)
    data = json.loads((copy / name).read_text())
    _set(data, path, value)
    (copy / name).write_text(json.dumps(data))
    line = one_line_error(capsys, ["report", str(copy), "--out", str(tmp_path / "rep")])
    assert name in line and words in line, line
    assert not (tmp_path / "rep" / "report.md").exists()
    reliability.record(
        "Ranges: every number read back",
        case,
        "clear error naming the file and field (report); no figure printed from it",
    )


@pytest.mark.parametrize("value", ["x", -0.5, float("nan"), 1e300])
def test_a_checkpoints_learning_rate_out_of_range_is_one_line(folders, tiny, tmp_path, capsys, reliability, value):
    run = shutil.copytree(folders / "run", tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    state["optimizer"]["param_groups"][0]["lr"] = value
    torch.save(state, run / "last.pt")
    for argv in (["train", "--resume", str(run), "--epochs", "1", "--no-progress"], ["eval", str(run)]):
        line = one_line_error(capsys, argv)
        assert "last.pt" in line and "param_groups" in line and "lr" in line, line
    reliability.record(
        "Ranges: every number read back",
        f"last.pt with `param_groups[0].lr` = {value!r}",
        "clear error naming the file and field (resume, eval)",
        trials=2,
    )


@pytest.mark.parametrize("there", ["absent", "empty", "another copy of the data"])
def test_a_config_json_data_dir_never_makes_a_resume_fetch_there(folders, tiny, tmp_path, capsys, reliability, there):
    run = shutil.copytree(folders / "run", tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    if there == "empty":
        elsewhere.mkdir()
    if there == "another copy of the data":
        shutil.copytree(tiny[1], elsewhere)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data_dir": str(elsewhere)}))
    argv = ["train", "--resume", str(run), "--epochs", "1", "--no-progress"]
    if there == "another copy of the data":  # verified where it is, and only read
        before = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
        assert main(argv) == 0
        assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == before
    else:
        line = one_line_error(capsys, argv)
        assert "a resume does not fetch into it: pass --data-dir" in line and str(run / "config.json") in line, line
        assert not elsewhere.exists() if there == "absent" else not any(elsewhere.iterdir())
        assert main([*argv, "--data-dir", str(tiny[1])]) == 0  # the user's own data root
    reliability.record(
        "Ranges: every number read back",
        f"a resume whose config.json names a data_dir that is {there}",
        "only read there, never fetched into (clear error suggesting --data-dir)",
    )

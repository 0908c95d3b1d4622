"""--json on every command that gives a result (strict JSON on stdout, progress on stderr), and the traces
of bench --trace and train --trace: Chrome trace-event JSON holding the step's operators."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from mnistlab import cli
from tests.conftest import operators


def _strict(text: str):
    """json.loads that refuses NaN and infinities, as strict parsers do."""

    def refuse(word):
        raise AssertionError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


def run_json(*argv: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--json"])
    assert code == 0, err.getvalue()
    return _strict(out.getvalue())


@pytest.fixture(scope="module")
def trained(tiny_module):
    """One tiny run, trained with --json and --trace (shared by this module's tests)."""
    _, root = tiny_module
    base = root.parent
    data = run_json(
        "train",
        "--dataset",
        "tiny",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--run-dir",
        str(base / "run"),
        "--trace",
        str(base / "traces"),
        "--no-tensorboard",
    )
    return data, base


def test_train_json_holds_the_run(trained):
    data, base = trained
    assert set(data) == {"folder", "status", "config", "epochs", "test", "epoch_times", "trace"}
    assert data["folder"] == str(base / "run") and data["status"]["state"] == "completed"
    assert data["config"]["model"] == "mlp" and len(data["epochs"]) == 1 and 0 <= data["test"]["accuracy"] <= 1
    assert data["epoch_times"]["cold_epochs"] == [1] and data["epoch_times"]["steady"] is None


def test_train_trace_holds_the_runs_step_and_leaves_the_run_alone(trained):
    from mnistlab.jobs.train import trace_run

    data, base = trained
    trace = Path(data["trace"])
    assert trace == base / "traces" / "run.trace.json"
    events = json.loads(trace.read_bytes())["traceEvents"]
    assert sum(str(e.get("name", "")).startswith("ProfilerStep#") for e in events) == 5
    assert {"aten::addmm", "aten::mm"} <= operators(trace.read_bytes())  # the MLP's forward and backward
    files = {p.name: p.read_bytes() for p in (base / "run").iterdir() if p.is_file()}
    trace_run(base / "run", base / "traces2", log=lambda m: None)  # again: the run's files do not change
    assert {p.name: p.read_bytes() for p in (base / "run").iterdir() if p.is_file()} == files


@pytest.mark.parametrize(
    "argv, keys",
    [
        (["env"], {"environment", "precision"}),
        (["summary", "cnn"], {"name", "tree", "parameters", "total", "trainable", "input_shape", "output_shape"}),
        (["data", "info", "--dataset", "tiny"], {"dataset", "train_samples", "test_samples", "classes"}),
    ],
)
def test_commands_without_a_run_print_strict_json(tiny_module, argv, keys):
    data = run_json(*argv)
    assert keys <= set(data)
    if argv[0] == "env":
        assert data["environment"]["torch"] == torch.__version__
    if argv[0] == "summary":
        assert data["total"] == 101_578 and data["parameters"][0] == {
            "key": "net.0.weight",
            "shape": [32, 1, 3, 3],
            "count": 288,
        }


def test_eval_and_report_of_a_run_print_json(trained):
    _, base = trained
    ev = run_json("eval", str(base / "run"), "--device", "cpu")
    assert 0 <= ev["accuracy"] <= 1 and len(ev["confusion"]) == 10
    rep = run_json("report", str(base / "run"), "--out", str(base / "report"))
    assert rep == {"report_md": str(base / "report" / "report.md"), "report_html": str(base / "report" / "report.html")}
    assert Path(rep["report_html"]).is_file()


def test_lab_json_names_its_folder_and_report(tmp_path, monkeypatch):
    import mnistlab.jobs.lab as lab

    page = tmp_path / "lab" / "report.html"
    monkeypatch.setattr(lab, "run_lab", lambda **kw: page)  # the command's printing, not a lab's minutes
    assert run_json("lab") == {
        "folder": str(tmp_path / "lab"),
        "report_html": str(page),
        "report_md": str(tmp_path / "lab" / "report.md"),
    }


def test_a_trace_dir_that_is_a_file_is_one_line_before_any_work(tiny_module, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for argv in (["train", "--dataset", "tiny"], ["bench", "--dataset", "tiny", "--models", "mlp"]):
        assert cli.main([*argv, "--trace", str(tmp_path / "afile")]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"mnistlab: error: --trace {tmp_path / 'afile'}: is not a folder (give the folder to write the "
            "trace into)\n"
        )
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    for bad, said in (
        ("", "--trace needs a folder name"),
        (" ", "--trace needs a folder name"),
        (str(tmp_path / "link"), "is a symbolic link"),
    ):
        for argv in (["train", "--dataset", "tiny"], ["bench", "--dataset", "tiny", "--models", "mlp"]):
            assert (
                cli.main(
                    [*argv, "--trace", bad, "--run-dir" if argv[0] == "train" else "--out", str(tmp_path / "never")]
                )
                == 2
            )
            err = capsys.readouterr().err
            assert said in err and err.count("\n") == 1, err
    assert not (tmp_path / "never").exists() and not any((tmp_path / "elsewhere").iterdir())
    assert cli.main(["bench", "--implementations", "eager", "--trace", str(tmp_path / "t")]) == 2
    assert "--trace records the pipeline cells' steps; drop --implementations" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_bench_json_and_trace_after_the_timing(tiny_module, monkeypatch):
    from mnistlab.jobs import bench as jobs

    _, root = tiny_module
    base = root.parent
    traced_after = []
    real = jobs.bench_traces

    def bench_traces(folder, **kw):  # the bench's result is written before the first traced step
        traced_after.append((base / "b" / "bench.json").is_file())
        return real(folder, **kw)

    monkeypatch.setattr(jobs, "bench_traces", bench_traces)
    data = run_json(
        "bench",
        "--dataset",
        "tiny",
        "--models",
        "cnn",
        "--devices",
        "cpu",
        "--pipelines",
        "resident",
        "--steps",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "1",
        "--out",
        str(base / "b"),
        "--trace",
        str(base / "bt"),
    )
    assert traced_after == [True]
    assert data["folder"] == str(base / "b") and data["file"] == "bench.json" and len(data["cells"]) == 1
    assert data["traces"] == [str(base / "bt" / "b-cnn-cpu-resident.trace.json")]
    trace = Path(data["traces"][0]).read_bytes()
    events = json.loads(trace)["traceEvents"]
    assert [e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")] == [
        f"ProfilerStep#{i}" for i in range(2, 7)
    ]  # 5 steps after 2 untraced ones
    assert {"aten::convolution", "aten::addmm", "aten::convolution_backward"} <= operators(trace)


@pytest.mark.slow
def test_speedrun_json(tiny_module):
    _, root = tiny_module
    data = run_json(
        "speedrun",
        "--dataset",
        "tiny",
        "--device",
        "cpu",
        "--seeds",
        "1",
        "--target",
        "50",
        "--no-channels-last",
        "--out",
        str(root.parent / "s"),
    )
    assert data["folder"] == str(root.parent / "s") and data["file"] == "speedrun.json"
    assert len(data["runs"]) == 1 and data["target"] == 50

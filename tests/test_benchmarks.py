"""The benchmark scripts still run (on tiny data; their timings are only meaningful on real data)."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test runs a benchmark script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "trainer_overhead.py"


def test_trainer_overhead_benchmark_runs(tiny, capsys):
    spec = importlib.util.spec_from_file_location("trainer_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--dataset", "tiny", "--repeats", "2", "--reference-steps", "3"])
    out = capsys.readouterr().out
    ratio = float(out.split("ratio trainer / bare (medians):")[1].split()[0])
    assert code == (0 if ratio <= module.FLOOR else 1)  # the exit code is the floor's verdict, nothing else
    assert "ratio trainer / bare (medians)" in out and "notebook pipeline" in out and "8 steps" in out


def test_startup_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("startup", SCRIPT.parent / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--repeats", "1"])
    out = capsys.readouterr().out
    helps = [float(ln.split("median")[1].split()[0]) for ln in out.splitlines() if ln.startswith("mnistlab")]
    assert len(helps) == 2 and code == (0 if max(helps) < module.TARGET_S else 1)


def test_levers_and_speedrun_benchmark_runs(tiny, capsys):
    spec = importlib.util.spec_from_file_location("levers_and_speedrun", SCRIPT.parent / "levers_and_speedrun.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(
        [
            "--dataset",
            "tiny",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--models",
            "mlp",
            "--speedrun-seeds",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code in (0, 1)  # tiny data says nothing about the floors
    assert "best lever for the CNN step" in out and "mlp 1 epochs (lr 0.05, momentum 0.9), seeds 0-0: bf16-mixed" in out
    assert "speedrun mean accuracy" in out and "median time" in out


def test_speedrun_ladder_runs_every_rung(tiny, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("speedrun_ladder", SCRIPT.parent / "speedrun_ladder.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "speedrun_ladder", module)  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    assert module.main(["--dataset", "tiny", "--seeds", "1", "--repeats", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.endswith(")") and "x  " in line]
    assert [r[3:33].strip() for r in rows] == [r.what[:30].strip() for r in module.RUNGS]
    # issue 20's recipe is the baseline of the ratios, medians' and repeat by repeat
    assert "vs issue 20" in out and "1.00x 1.00 (1.00-1.00)x" in rows[module.ISSUE20_RUNG]
    assert "freed memory kept (levers.keep_freed_memory): yes" in out and "amx_bf16" in out


def test_threads_under_load_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("threads_under_load", SCRIPT.parent / "threads_under_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--models", "mlp", "--busy", "0", "1", "--repeats", "2", "--steps", "2", "--passive"])
    out = capsys.readouterr().out
    assert code in (0, 1)  # two steps say nothing about the floor
    assert "machine:" in out and "1 busy process(es)" in out and "default chose" in out
    assert "(the better fixed):" in out and "floor 1.2x" in out and "default / torch's own" in out
    assert re.search(r"\d+ threads? passive", out)


def test_checkpoint_cost_benchmark_runs(tiny, capsys):
    spec = importlib.util.spec_from_file_location("checkpoint_cost", SCRIPT.parent / "checkpoint_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--dataset", "tiny", "--repeats", "2", "--every", "2", "--cnn-steps", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("per checkpoint") == 2 and "with a checkpoint every 2 steps (4 per epoch)" in out


def test_gpu_prediction_check_holds_against_the_published_runs(capsys):
    """The model that answers Q6/Q9 against train_mnist_fast's published times: the bound must stay below them."""
    spec = importlib.util.spec_from_file_location("gpu_prediction_check", SCRIPT.parent / "gpu_prediction_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--costs-us", "2", "5", "10"]) == 0
    out = capsys.readouterr().out
    assert out.count("holds") == 6 and "WRONG" not in out and "published 0.76 s" in out
    assert "training step at batch 256" in out and "233" in out  # 235 steps: the first, 233 steady, the last


def test_decomposition_cost_benchmark_runs(tiny, capsys):
    spec = importlib.util.spec_from_file_location("decomposition_cost", SCRIPT.parent / "decomposition_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--pairs", "1", "--dataset", "tiny", "--models", "mlp", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split()[0] for ln in out.splitlines() if re.match(r"(with|without) +[\d.]+ ", ln)]
    assert rows == ["without", "with"] and re.search(r"with / without the decompositions, per pair: [\d.]+x", out)
    assert re.search(r"^with +[\d.]+ +[\d.]+ \(\d+%\)", out, re.M)  # the decompositions' own part of the run


def test_decomposition_tables_of_a_bench_folder(tmp_path, capsys):
    """benchmarks/decomposition.py --bench: a bench's own decompositions, read back as the report reads them."""
    from fakes import fake_decomposition

    from mnistlab.jobs.bench import write_bench
    from mnistlab.measure.bench import BenchResult

    spec = importlib.util.spec_from_file_location("decomposition", SCRIPT.parent / "decomposition.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bench = BenchResult(
        [],
        {"cpu": 1e11},
        {"cpu": "a CPU"},
        {"batch_size": 64, "steps": 10, "repeats": 2, "warmup": 2},
        decompositions=[fake_decomposition("mlp", 0.35e-3, 3.6e-6)],
    )
    write_bench(bench, tmp_path)
    assert module.main(["--bench", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bound by its fixed per-step cost" in out and "mlp on a CPU (2 threads)" in out
    assert module.main(["--bench", str(tmp_path / "none")]) == 2 and "not found" in capsys.readouterr().err

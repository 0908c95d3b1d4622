"""`mnistlab speedrun` end to end on tiny data (not timed: a fake clock checks what the time covers)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mnistlab import cli
from mnistlab.measure import speedrun as sr
from mnistlab.measure.ceilings import Ceilings, Theoretical
from mnistlab.training import recipe as rc
from mnistlab.training.levers import Levers


def _tiny_speedrun(**kw) -> sr.SpeedrunResult:
    """sr.speedrun on the tiny dataset (written by the `tiny` fixture) on the CPU, quiet; fp32 eager unless `levers`."""
    from mnistlab.data.datasets import data_root, get_dataset
    from mnistlab.data.loader import read_split

    spec, root = get_dataset("tiny"), data_root(None)
    kw.setdefault("levers", Levers())
    return sr.speedrun(
        read_split(spec, root, True), read_split(spec, root, False), spec, torch.device("cpu"), log=lambda m: None, **kw
    )


def _result(
    seeds: list, *, target: float = 99.0, data_s: float = 0.3, images: tuple = (60000, 10000), params: int = 1000, **kw
) -> sr.SpeedrunResult:
    """A speedrun result of the default recipe on the CPU over `seeds` (the rest as its fields)."""
    return sr.SpeedrunResult(sr.Recipe(), Levers(), "cpu", "a CPU", target, data_s, *images, params, seeds, **kw)


def run_cli(tmp_path, *extra):
    return cli.main(["speedrun", "--dataset", "tiny", "--device", "cpu", "--out", str(tmp_path / "s"), *extra])


@pytest.mark.slow
def test_speedrun_end_to_end_on_tiny_data(tiny, tmp_path, capsys):
    assert run_cli(tmp_path, "--seeds", "2", "--target", "50", "--no-channels-last") == 0
    out = capsys.readouterr().out
    assert "seeds   reached 50%" in out and "time median (range)" in out  # the small table (issue 28)
    data = json.loads((tmp_path / "s" / "speedrun.json").read_text())
    runs, summary = data["runs"], data["summary"]
    assert [r["seed"] for r in runs] == [0, 1]
    assert all(r["total"] == 200 for r in runs)  # the whole test set, every seed
    assert all(r["accuracy"] == pytest.approx(100 * r["correct"] / 200) for r in runs)
    assert summary["accuracy_mean"] == pytest.approx(sum(r["accuracy"] for r in runs) / 2)
    assert summary["reached_target"] == sum(r["accuracy"] >= 50 for r in runs)
    assert summary["accuracy_mean"] > 50  # it learns the tiny task in one epoch
    # the recipe's CPU levers (bf16-mixed + channels-last), one of them switched off on the command line
    assert data["recipe"]["model"] == "speednet" and data["levers_text"] == "eager bf16-mixed"
    assert data["train_samples"] == 640 and data["env"]["torch"] == torch.__version__

    from mnistlab.report.document import Document
    from mnistlab.report.runs import run_levers_text
    from mnistlab.report.sections.speedrun import speedrun_section

    doc = Document("t")
    result = sr.SpeedrunResult.from_dict(data)
    assert result.to_dict() == data  # round trip
    assert data["summary"]["time_stability"]["stable"] is result.stability.stable
    # the floor: counted FLOPs over the ceiling measured here, per seed and as a median
    flops, ceiling = data["flops"]["train"] + data["flops"]["eval"], data["ceiling"]["flops_per_s"]
    assert data["ceiling"]["dtype"] == "bfloat16" and summary["flops_per_run"] == flops > 0
    assert all(r["flops_per_s"] == pytest.approx(flops / r["seconds"]) for r in runs)
    assert all(r["ceiling_fraction"] == pytest.approx(flops / r["seconds"] / ceiling) for r in runs)
    assert summary["floor_s"] == pytest.approx(flops / ceiling) and data["ceiling_s"] > 0
    details = result.details()  # every row; the command prints the small table (issue 28)
    assert f"of the measured bfloat16 compute ceiling, {ceiling / 1e9:,.1f} GFLOP/s (" in details
    assert f"floor {flops / ceiling:.2g} s (the counted FLOPs at the ceiling)" in details
    assert f"   {flops / ceiling:.2g} s   " in out.splitlines()[3]
    # main([...]) from Python is not a fresh process: no cold time, and the line says why
    assert data["cold_s"] is None and "cold start not measured: not a fresh process" in details
    speedrun_section(doc, result)
    md = doc.to_markdown(tmp_path)
    assert (
        "Speedrun: time to 50% test accuracy" in md and f"{runs[1]['accuracy']:.2f}% ({runs[1]['correct']}/200)" in md
    )
    assert f"at the ceiling a run would take {flops / ceiling:.2g} s (the floor)" in md
    assert "Cold start: not measured: not a fresh process" in md
    assert run_levers_text({"precision": "bf16-mixed", "channels_last": True}) == "eager bf16-mixed + channels-last"
    assert run_levers_text({}) == "eager fp32"  # an old run's config.json


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:  # the cold time's clock: the same fake seconds
        return self.now


@pytest.mark.slow
def test_the_time_covers_training_and_the_whole_evaluation_and_nothing_else(tiny, monkeypatch):
    """Each step costs 1 s, the full test evaluation 1000 s, the warm-up's evaluation 50 s, loading 10^6 s."""
    from mnistlab.core import timing
    from mnistlab.training import recipe as rc

    clock = FakeClock()
    monkeypatch.setattr(sr, "time", clock)
    monkeypatch.setattr(timing, "time", clock)  # every Timer reads this clock
    real_make_step, real_eval, real_loader = rc.make_step, rc.evaluate, rc.DeviceLoader

    def make_step(*a, **kw):
        step = real_make_step(*a, **kw)
        inner = step.eager

        def eager(x, y):
            clock.now += 1
            return inner(x, y)

        step.eager = eager
        return step

    def evaluate(model, loader, n):
        clock.now += 1000 if isinstance(loader, real_loader) else 50
        return real_eval(model, loader, n)

    def loader(*a, **kw):
        clock.now += 1e6
        return real_loader(*a, **kw)

    def slow(seconds, real):  # the FLOP count and the ceiling probe, each made to cost fake seconds
        def run(*a, **kw):
            clock.now += seconds
            return real(*a, **kw)

        return run

    monkeypatch.setattr(rc, "make_step", make_step)
    monkeypatch.setattr(rc, "evaluate", evaluate)
    monkeypatch.setattr(rc, "DeviceLoader", loader)
    monkeypatch.setattr(sr, "count_run", slow(1e7, sr.count_run))
    # the probe's own time budget runs on the (frozen) fake clock: a fixed ceiling instead, at a fake cost
    monkeypatch.setattr(
        sr,
        "measure_ceilings",
        slow(
            1e8,
            lambda device, dtype, seconds: Ceilings(
                "cpu", str(dtype).removeprefix("torch."), 1e9, "matmul 8x8 @ 8x8", 1.0, 1.0, Theoretical(None, "")
            ),
        ),
    )
    recipe = rc.Recipe(batch_size=128, epochs=2, warmup_steps=3)
    result = _tiny_speedrun(
        seeds=2,
        target=10,
        recipe=recipe,
        cold_since=(-7.0, "process start"),
    )
    steps = 2 * 4  # two epochs of the first 80% (the recipe's epoch_fraction) of 640 / 128 = 5 batches
    for r in result.seeds:
        assert (r.train_s, r.eval_s, r.seconds) == (steps, 1000, steps + 1000)
        assert r.warmup_s == 3 + 50 and r.total == 200
    assert result.data_s == 2e6
    # the count and the probe: once, after seed 0, in no seed's time and not in the cold one
    assert result.ceiling_s == 1e7 + 1e8 and result.ceiling is not None
    assert result.cold_s == 7 + 2e6 + 53 + steps + 1000 and result.cold_from == "process start"


@pytest.mark.slow
def test_a_busy_machine_is_said_in_the_line_and_the_record(tiny, monkeypatch):
    """Timings taken while other processes held the cores are not the machine's: the result says so."""

    loads = iter([{"load_avg_1m": 0.5, "cpu_count": 2}, {"load_avg_1m": 4.2, "cpu_count": 2}])
    monkeypatch.setattr(sr, "load_snapshot", lambda: next(loads))
    result = _tiny_speedrun(
        seeds=1,
        recipe=sr.Recipe(batch_size=320),
    )
    assert "unstable" in result.details() and "4.2 at the end" in result.details()
    assert (
        result.to_dict()["machine_busy"] == result.machine_busy
        and result.to_dict()["load"]["end"]["load_avg_1m"] == 4.2
    )
    quiet = sr.SpeedrunResult(
        result.recipe,
        result.levers,
        "cpu",
        "x",
        99.0,
        0.0,
        1,
        1,
        seeds=result.seeds * 2,
        load={"start": {"load_avg_1m": 0.5, "cpu_count": 2}, "end": {"load_avg_1m": 1.9, "cpu_count": 2}},
    )
    assert quiet.machine_busy is None and "unstable" not in quiet.details()


def test_out_that_is_taken_is_one_line_naming_out(tiny, tmp_path, capsys):
    """speedrun has no --resume: the refusal names its own option, and what was there is kept."""
    (tmp_path / "afile").write_text("mine")
    assert cli.main(["speedrun", "--dataset", "tiny", "--device", "cpu", "--out", str(tmp_path / "afile")]) == 2
    assert capsys.readouterr().err.strip().endswith("is a file, not a folder; choose another --out")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "speedrun.json").write_text("keep")
    assert cli.main(["speedrun", "--dataset", "tiny", "--device", "cpu", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("already exists and is not empty; choose another --out") and "--resume" not in err
    assert (tmp_path / "afile").read_text() == "mine" and (tmp_path / "d" / "speedrun.json").read_text() == "keep"


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--precision", "16-mixed"], "16-mixed needs a CUDA GPU"),
        (["--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),
    ],
)
def test_levers_the_device_lacks_are_one_line(tiny, tmp_path, capsys, extra, words):
    assert run_cli(tmp_path, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("target", ["0", "101", "ninety"])
def test_bad_target_is_one_line(tiny, tmp_path, capsys, target):
    with pytest.raises(SystemExit) as e:
        run_cli(tmp_path, "--target", target)
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_speedrun_on_cuda_with_graphs(tiny, tmp_path):
    assert (
        cli.main(
            [
                "speedrun",
                "--dataset",
                "tiny",
                "--device",
                "cuda",
                "--seeds",
                "2",
                "--target",
                "50",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "s" / "speedrun.json").read_text())
    assert data["levers"]["cuda_graphs"] is True and all(r["total"] == 200 for r in data["runs"])
    assert data["summary"]["accuracy_mean"] > 50


@pytest.mark.parametrize(
    "damage, field",
    [
        (lambda d: d["runs"][0].pop("seconds"), "seconds"),
        (lambda d: d["recipe"].update(epochs="one"), "epochs"),
        (lambda d: d.update(runs=[]), "runs"),
        (lambda d: d["ceiling"].update(flops_per_s=0), "flops_per_s"),
        (lambda d: d["flops"].pop("eval"), "eval"),
        (lambda d: d.update(cold_s=-1.0), "cold_s"),
        (lambda d: d.update(not_measured={"cold": 3}), "cold"),
    ],
)
def test_a_malformed_speedrun_json_is_one_line_naming_the_file_and_field(tmp_path, damage, field):
    from mnistlab.core.errors import CheckpointError
    from mnistlab.core.schema import read_result

    data = _good_record()
    damage(data)
    (tmp_path / "speedrun.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        read_result(sr.SpeedrunResult, tmp_path)
    message = str(e.value)
    assert str(tmp_path / "speedrun.json") in message and field in message and "\n" not in message


def test_speedrun_times_are_judged_by_the_one_stability_rule():
    def result(times):
        seeds = [sr.SeedResult(i, 99.0, 198, 200, t, t, 0.0, 0.2, 0.1) for i, t in enumerate(times)]
        return _result(seeds, images=(640, 200))

    assert result([4.0, 4.1, 4.05]).stability.stable
    assert not result([4.0, 5.0]).stability.stable and "unstable" in result([4.0, 5.0]).details()
    assert "1 repeat, no range" in result([4.0]).details()


# --- issue 20, item 2: the floor, the t-test, the cold time ------------------------------------------

MLP_LAYERS = [(784, 128), (128, 64), (64, 10)]


def test_a_runs_flops_match_a_hand_count(tiny, monkeypatch):
    """mlp at batch 300 on 640 images: 2 full steps and a short one of 40; the test set's 200 images in one
    forward pass. A linear layer is 2*in*out FLOPs an image forward, as much again for its weight's
    gradient, and as much again for its input's, except the first (the image needs no gradient)."""
    from mnistlab.data.datasets import get_dataset
    from mnistlab.measure.ceilings import Ceilings, Theoretical

    forward = sum(2 * i * o for i, o in MLP_LAYERS)
    step = forward + forward + sum(2 * i * o for i, o in MLP_LAYERS[1:])  # per image
    run = 2 * 300 * step + 40 * step + 200 * forward
    assert sr.count_run(sr.Recipe(model="mlp", batch_size=300), get_dataset("tiny").shape, 640, 200) == sr.RunFlops(
        300 * step, 2 * 300 * step + 40 * step, 200 * forward
    )
    assert sr.RunFlops(300 * step, 2 * 300 * step + 40 * step, 200 * forward).run == run
    # two epochs count every step twice; a test set of 2,500 at batch 1000 is two full passes and one of 500
    assert sr.count_run(
        sr.Recipe(model="mlp", batch_size=300, epochs=2), get_dataset("tiny").shape, 640, 2500
    ) == sr.RunFlops(300 * step, 2 * (640 * step), 2500 * forward)
    # a partial epoch counts the batches it trains: half of 7 (6 of 100, one of 40) is the first 4, all full
    assert sr.count_run(
        sr.Recipe(model="mlp", batch_size=100, epoch_fraction=0.5), get_dataset("tiny").shape, 640, 200
    ) == sr.RunFlops(100 * step, 4 * 100 * step, 200 * forward)

    monkeypatch.setattr(
        sr,
        "measure_ceilings",
        lambda device, dtype, seconds: Ceilings(
            "cpu", str(dtype).removeprefix("torch."), 1e9, "matmul 8x8 @ 8x8", 1.0, 1.0, Theoretical(None, "")
        ),
    )
    result = _tiny_speedrun(
        seeds=2,
        target=10,
        recipe=sr.Recipe(model="mlp", batch_size=300),
    )
    assert result.flops.run == run and result.ceiling == sr.Ceiling(1e9, "bfloat16", "matmul 8x8 @ 8x8")
    assert result.floor_s == pytest.approx(run / 1e9)
    assert [result.ceiling_fraction(s) for s in result.seeds] == pytest.approx(
        [run / s.seconds / 1e9 for s in result.seeds]
    )
    assert f"{run / 1e9:,.2f} GFLOP per run" in result.details()
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    doc = Document("t")
    speedrun_section(doc, result)
    assert "at batch 300, the short last batch of 40 counted at its size" in doc.to_markdown(Path("."))


def test_a_count_or_a_probe_that_fails_is_recorded_not_raised(tiny, monkeypatch, tmp_path):
    """A user's model the counter cannot run, or a device without the dtype: the seeds stand, the line says
    'not counted' / 'not measured' with the first line of the error, and the file reads back."""
    from mnistlab.core.schema import read_result
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    def fail(*a, **kw):
        raise RuntimeError("no formula for this op\nsecond line of a traceback-like message")

    monkeypatch.setattr(sr, "count_step", fail)
    monkeypatch.setattr(sr, "measure_ceilings", fail)
    result = _tiny_speedrun(
        seeds=1,
        target=10,
        recipe=sr.Recipe(batch_size=320),
    )
    assert result.flops is None and result.ceiling is None and result.floor_s is None and len(result.seeds) == 1
    line = result.details()
    assert "FLOPs not counted (RuntimeError: no formula for this op)" in line and "second line" not in line
    assert "floor unknown (FLOPs not counted" in line and all(len(x) <= 160 for x in line.splitlines())
    assert result.not_measured["ceiling"] == "not measured (RuntimeError: no formula for this op)"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / sr.SpeedrunResult.FILE).write_text(json.dumps(result.to_dict()))
    back = read_result(sr.SpeedrunResult, tmp_path / "r")
    assert back.to_dict() == result.to_dict() and back.summary()["flops_per_run"] is None
    doc = Document("t")
    speedrun_section(doc, back)
    md = doc.to_markdown(tmp_path)
    assert "Arithmetic: FLOPs not counted (RuntimeError: no formula for this op), so no floor" in md


def t_upper_tail_4_degrees(t: float) -> float:
    """P(T > t) for Student's t with 4 degrees of freedom, in closed form (no scipy)."""
    u = t / math.sqrt(1 + t * t / 4)
    return 0.5 - 3 / 8 * u * (1 - u * u / 12)


def test_the_one_sided_t_test_matches_a_known_value():
    """Five seeds, mean 99.15, sample std sqrt(0.0125): t = 0.15 / 0.05 = 3 with 4 degrees of freedom."""
    accs = [99.1, 99.2, 99.0, 99.3, 99.15]
    t = sr.target_test(accs, 99.0)
    assert t.n == 5 and t.t == pytest.approx(3.0) and t.why_not is None
    assert t.p == pytest.approx(t_upper_tail_4_degrees(3.0), rel=1e-9) and t.p == pytest.approx(0.019971, abs=1e-6)
    # one-sided: a mean below the target is no evidence for 'above' (p past one half), not a small p
    below = sr.target_test(accs, 99.3)
    assert below.p == pytest.approx(1 - t_upper_tail_4_degrees(3.0), rel=1e-9)

    seeds = [sr.SeedResult(i, a, 0, 10000, 4.0, 4.0, 0.0, 0.1, 0.1) for i, a in enumerate(accs)]
    result = _result(seeds)
    assert result.summary()["target_test"] == {
        "alternative": "mean accuracy > target",
        "n": 5,
        "t": t.t,
        "p": t.p,
        "why_not": None,
    }
    assert (
        "mean above 99%? t = 3.00, p = 0.02 (one-sided t-test over 5 seeds; p is the chance of a t at least "
        "this large if the true mean were 99%, smaller still for any lower mean)"
    ) == result.test_words()
    assert "t = 3.00, p = 0.02 (one-sided t-test over 5 seeds)" in result.details()
    assert "t = 3.00, p = 0.02" in result._repr_html_()


@pytest.mark.parametrize(
    "accs, why",
    [
        ([99.5], "1 seed: no spread to test with"),
        ([99.2, 99.2, 99.2], "all 3 seeds have the same accuracy: zero spread"),
        ([99.2, 99.2], "both seeds have the same accuracy"),
    ],
)
def test_no_t_test_with_one_seed_or_no_spread(accs, why, tmp_path):
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    t = sr.target_test(accs, 99.0)
    assert t.p is None and t.t is None and why in t.why_not
    seeds = [sr.SeedResult(i, a, 0, 10000, 4.0, 4.0, 0.0, 0.1, 0.1) for i, a in enumerate(accs)]
    result = _result(seeds)
    assert f"no t-test: {why}" in result.details() and "p = " not in result.details()
    assert result.to_dict()["summary"]["target_test"]["p"] is None
    doc = Document("t")
    speedrun_section(doc, result)
    assert f"No t-test of a mean above 99%: {why}" in doc.to_markdown(tmp_path)


def test_an_older_speedrun_json_without_the_new_keys_reads_and_reports(tmp_path):
    """A file written before the floor, the t-test and the cold time: it reads, and says what it lacks."""
    from mnistlab.core.schema import read_result
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    seeds = [sr.SeedResult(s, 99.1 + s / 10, 9910, 10000, 3.0 + s, 2.5, 0.5, 0.3, 0.05) for s in range(3)]
    data = _result(
        seeds,
        data_s=0.4,
        params=1234,
        flops=sr.RunFlops(1, 2, 3),
        ceiling=sr.Ceiling(1e9, "bfloat16", "m"),
        ceiling_s=1.0,
        cold_s=5.0,
        cold_from="process start",
    ).to_dict()
    new = {"flops", "flops_counted", "ceiling", "ceiling_s", "cold_s", "cold_from", "cold_includes", "not_measured"}
    old = {k: v for k, v in data.items() if k not in new}
    old["runs"] = [{k: v for k, v in r.items() if k not in ("flops_per_s", "ceiling_fraction")} for r in data["runs"]]
    old["summary"] = {
        k: v
        for k, v in data["summary"].items()
        if k
        not in (
            "target_test",
            "flops_per_run",
            "flops_per_s_median",
            "ceiling_fraction_median",
            "floor_s",
            "ceiling_s",
            "cold_s",
        )
    }
    (tmp_path / sr.SpeedrunResult.FILE).write_text(json.dumps(old))
    result = read_result(sr.SpeedrunResult, tmp_path)
    assert result.flops is None and result.ceiling is None and result.cold_s is None
    assert result.recipe == sr.Recipe()  # a file that has the recipe's keys reads them
    issue32 = ("label_smoothing", "adam_beta2", "epoch_fraction", "test_shift", "test_shift_below")
    old["recipe"] = {k: v for k, v in old["recipe"].items() if k not in issue32}
    (tmp_path / sr.SpeedrunResult.FILE).write_text(json.dumps(old))
    result = read_result(sr.SpeedrunResult, tmp_path)
    # a recipe written before a key existed trained with what it then meant: no smoothing, torch's beta2,
    # whole epochs, no shifted views
    r = result.recipe
    assert (r.label_smoothing, r.adam_beta2, r.epoch_fraction, r.test_shift) == (0.0, 0.999, 1.0, 0)
    line = result.details()
    assert "FLOPs not recorded (an older speedrun.json)" in line and "cold start not recorded" in line
    assert (
        "mean above 99%?  " in line and "t = " in line
    )  # the t-test needs only the seeds' accuracies, which old files have
    doc = Document("t")
    speedrun_section(doc, result)
    md = doc.to_markdown(tmp_path)
    assert "Cold start: not recorded (an older speedrun.json)." in md and "| 3.00 s | 2.50 s |" in md
    assert "<table>" in result._repr_html_()


@pytest.mark.slow
def test_cold_time_of_a_fresh_command_line_process(tiny, tmp_path):
    """`python -m mnistlab speedrun` in its own process: the cold time runs from the process's start
    (the kernel's, on Linux) to seed 0's result, so it holds seed 0's time, its warm-up and the data's,
    and fits inside the wall time the parent saw."""
    spec, root = tiny
    (tmp_path / "datasets.json").write_text(json.dumps([dataclasses.asdict(spec)]))
    env = {
        **os.environ,
        "MNISTLAB_DATA": str(root),
        "MNISTLAB_DATASETS_FILE": str(tmp_path / "datasets.json"),
        "PYTHONPATH": str(Path(sr.__file__).parents[2]),
        "OMP_NUM_THREADS": "1",
    }
    t0 = time.time()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "speedrun",
            "--dataset",
            "tiny",
            "--device",
            "cpu",
            "--seeds",
            "2",
            "--target",
            "50",
            "--out",
            str(tmp_path / "s"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.time() - t0
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    data = json.loads((tmp_path / "s" / "speedrun.json").read_text())
    first = data["runs"][0]
    expected_from = "process start" if sys.platform.startswith("linux") else "mnistlab import"
    assert data["cold_from"] == expected_from and data["cold_includes"].startswith(
        "the interpreter's start" if expected_from == "process start" else "mnistlab's import"
    )
    assert first["seconds"] + first["warmup_s"] + data["summary"]["data_s"] < data["cold_s"] < wall
    assert f"   {data['cold_s']:.2f} s   " in p.stdout.splitlines()[3]  # the small table's cold start column
    assert (
        f"cold {data['cold_s']:.2f} s from {expected_from} to seed 0's result"
        in sr.SpeedrunResult.from_dict(data).details()
    )


def test_inputs_kept_in_the_autocast_dtype_train_exactly_as_cast_ones(tiny):
    """The speedrun keeps its images in bf16 under bf16-mixed: the first layer computes in bf16 anyway, so
    every seed's loss and accuracy must equal those of float32 images cast at each step."""
    from mnistlab.data.datasets import data_root, get_dataset
    from mnistlab.data.loader import read_split

    spec, root = get_dataset("tiny"), data_root(None)
    train, test = read_split(spec, root, True), read_split(spec, root, False)
    # whole epochs: 4 of 5 batches would leave OneCycleLR (pct_start 0.25) a warm-up it divides by zero in
    recipe = sr.Recipe(batch_size=128, warmup_steps=1, epoch_fraction=1.0)
    levers = Levers(precision="bf16-mixed", channels_last=True)
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        tr, te, _ = sr.load_to_device(train, test, spec, recipe.batch_size, torch.device("cpu"), dtype=dtype)
        assert tr.x.dtype == te.x.dtype == dtype
        runs[dtype] = sr.run_seed(recipe, levers, 0, tr, te, spec.shape)
    a, b = runs[torch.float32], runs[torch.bfloat16]
    assert (a.final_loss, a.correct) == (b.final_loss, b.correct)


@pytest.mark.parametrize(
    "batches, fraction, trained",
    [(235, 0.8, 188), (235, 1.0, 235), (196, 0.8, 157), (5, 0.8, 4), (1, 0.01, 1), (10, 0.71, 8)],
)
def test_a_partial_epoch_trains_the_first_ceil_of_its_batches(batches, fraction, trained):
    assert sr.Recipe(epoch_fraction=fraction).batches_per_epoch(batches) == trained


def test_shifted_views_average_the_unsure_images_only():
    """A confident image's output is the model's log-softmax; an unsure one's is the log of the mean softmax
    over the image and the image shifted up and down a pixel, the edge row repeated."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x = torch.randn(6, 1, 4, 4)
    with torch.no_grad():
        plain = model(x).log_softmax(1)
        peak = plain.exp().amax(1)
        below = float(peak.sort().values[3])  # the 3 least confident are unsure
        out = rc.ShiftedViews(model, 1, below)(x)
        up = torch.cat([x[..., 1:, :], x[..., -1:, :]], dim=-2)
        down = torch.cat([x[..., :1, :], x[..., :-1, :]], dim=-2)
        mean = (plain.exp() + model(up).softmax(1) + model(down).softmax(1)) / 3
    unsure = peak < below
    assert unsure.sum() == 3
    assert torch.allclose(out[~unsure], plain[~unsure]) and torch.allclose(out[unsure], mean[unsure].log())
    assert rc.evaluated(model, sr.Recipe(test_shift=0)) is model
    assert isinstance(rc.evaluated(model, sr.Recipe()), rc.ShiftedViews)


def test_the_recipes_adam_has_its_beta2():
    model = torch.nn.Linear(3, 2)
    for beta2 in (0.95, 0.999):
        opt = sr.recipe_optimizer(model, sr.Recipe(adam_beta2=beta2), Levers(), torch.device("cpu"))
        assert opt.param_groups[0]["betas"] == (0.9, beta2)


def test_the_speedrun_stores_its_inputs_in_the_levers_dtype(tiny, monkeypatch):

    seen = []
    real = sr.load_to_device
    monkeypatch.setattr(sr, "load_to_device", lambda *a, **kw: seen.append(kw.get("dtype")) or real(*a, **kw))
    monkeypatch.setattr(sr, "measure_ceilings", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("skipped")))
    for levers in (Levers(), Levers(precision="bf16-mixed")):
        _tiny_speedrun(
            seeds=1,
            target=10,
            recipe=sr.Recipe(batch_size=128, warmup_steps=1, epoch_fraction=1.0),
            levers=levers,
        )
    assert seen == [torch.float32, torch.bfloat16]


# --- hostile values in speedrun.json: each is one line naming the file and the field ----------------------


def _good_record() -> dict:
    seeds = [sr.SeedResult(s, 99.0, 198, 200, 4.0 + s, 3.5, 0.5, 0.2, 0.1) for s in range(2)]
    return _result(
        seeds,
        images=(640, 200),
        flops=sr.RunFlops(10, 50, 20),
        ceiling=sr.Ceiling(1e9, "bfloat16", "matmul"),
        ceiling_s=1.0,
        cold_s=9.0,
        cold_from="process start",
    ).to_dict()


HOSTILE = [  # (what, damage, the field the line must name)
    ("flops.step negative", lambda d: d["flops"].update(step=-5), "step"),
    ("flops.train negative", lambda d: d["flops"].update(train=-1), "train"),
    ("flops all zero: a floor of 0 s", lambda d: d["flops"].update(step=0, train=0, eval=0), "train"),
    ("flops beyond any float", lambda d: d["flops"].update(train=10**400), "train"),
    ("a ceiling so small the floor is inf", lambda d: d["ceiling"].update(flops_per_s=1e-300), "flops_per_s"),
    ("a ceiling of 1e308 FLOP/s", lambda d: d["ceiling"].update(flops_per_s=1e308), "flops_per_s"),
    ("ceiling_s negative", lambda d: d.update(ceiling_s=-3.0), "ceiling_s"),
    ("ceiling_s of 1e300 s", lambda d: d.update(ceiling_s=1e300), "ceiling_s"),
    ("cold_s of 1e300 s", lambda d: d.update(cold_s=1e300), "cold_s"),
    ("cold_s below seed 0's own time", lambda d: d.update(cold_s=0.01), "cold_s"),
    ("cold_s without cold_from", lambda d: d.update(cold_from=None), "cold_from"),
    ("cold_from no writer writes", lambda d: d.update(cold_from="the big bang"), "cold_from"),
    ("label_smoothing 5", lambda d: d["recipe"].update(label_smoothing=5), "label_smoothing"),
    ("label_smoothing -1", lambda d: d["recipe"].update(label_smoothing=-1), "label_smoothing"),
    ("adam_beta2 1.5", lambda d: d["recipe"].update(adam_beta2=1.5), "adam_beta2"),
    ("epoch_fraction 2", lambda d: d["recipe"].update(epoch_fraction=2), "epoch_fraction"),
    ("test_shift -1", lambda d: d["recipe"].update(test_shift=-1), "test_shift"),
    ("test_shift_below 5", lambda d: d["recipe"].update(test_shift_below=5), "test_shift_below"),
    ("batch_size 0 (the report divides by it)", lambda d: d["recipe"].update(batch_size=0), "batch_size"),
    ("epochs 0", lambda d: d["recipe"].update(epochs=0), "epochs"),
    ("max_lr negative", lambda d: d["recipe"].update(max_lr=-1), "max_lr"),
    ("pct_start 5", lambda d: d["recipe"].update(pct_start=5), "pct_start"),
    ("target 200%", lambda d: d.update(target=200), "target"),
    ("accuracy 150%", lambda d: d["runs"][0].update(accuracy=150.0), "accuracy"),
    ("more correct than total", lambda d: d["runs"][0].update(correct=20000), "correct"),
    ("total 0", lambda d: d["runs"][0].update(total=0), "total"),
    ("a negative warm-up", lambda d: d["runs"][0].update(warmup_s=-1.0), "warmup_s"),
    ("a seed's time of 1e300 s", lambda d: d["runs"][0].update(seconds=1e300), "seconds"),
    ("data_s negative", lambda d: d["summary"].update(data_s=-1.0), "data_s"),
    ("train_samples 0", lambda d: d.update(train_samples=0), "train_samples"),
    ("seeds_planned negative", lambda d: d.update(seeds_planned=-1), "seeds_planned"),
    ("model_parameters negative", lambda d: d.update(model_parameters=-5), "model_parameters"),
    ("a precision no lever has", lambda d: d["levers"].update(precision="fp8"), "precision"),
    ("a compile mode torch lacks", lambda d: d["levers"].update(compile="yes"), "compile"),
]


@pytest.mark.parametrize("what, damage, field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_value_in_speedrun_json_is_one_line_and_no_report(tmp_path, capsys, what, damage, field):
    data = _good_record()
    damage(data)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / sr.SpeedrunResult.FILE).write_text(json.dumps(data))
    code = cli.main(["report", str(tmp_path / "s"), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1, err
    assert str(tmp_path / "s" / "speedrun.json") in err and field in err
    assert not (tmp_path / "rep" / "report.md").exists()


def test_the_good_record_the_hostile_ones_start_from_reports(tmp_path, capsys):
    """It reads and reports, also with keys a newer mnistlab might add to flops and ceiling (they raised a
    TypeError traceback from RunFlops(**...) and Ceiling(**...)): read as the recipe is, known keys only."""
    data = _good_record()
    data["flops"]["extra"] = data["ceiling"]["extra"] = 1
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / sr.SpeedrunResult.FILE).write_text(json.dumps(data))
    assert cli.main(["report", str(tmp_path / "s"), "--out", str(tmp_path / "rep")]) == 0
    assert "Cold start: 9.00 s from the process start" in (tmp_path / "rep" / "report.md").read_text()


def test_what_the_reader_refuses_the_writer_never_writes(tiny, monkeypatch, tmp_path):
    """A count of no FLOPs (a model with no matmul or convolution) is 'not counted', not a floor of 0 s; a cold
    time shorter than seed 0's warm-up and run (a wall clock set back) is 'not measured'; the file reads back."""
    from mnistlab.core.schema import read_result

    monkeypatch.setattr(sr, "count_run", lambda *a, **kw: sr.RunFlops(0, 0, 0))
    monkeypatch.setattr(sr, "measure_ceilings", lambda *a, **kw: (_ for _ in ()).throw(RuntimeError("skipped")))
    result = _tiny_speedrun(
        seeds=1,
        target=10,
        recipe=sr.Recipe(batch_size=128, warmup_steps=1, epoch_fraction=1.0),
        cold_since=(time.time() + 3600, "process start"),
    )
    assert result.flops is None and "no matmul or convolution" in result.not_measured["flops"]
    assert result.cold_s is None and result.not_measured["cold"].startswith("not measured: the wall clock went back")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / sr.SpeedrunResult.FILE).write_text(json.dumps(result.to_dict()))
    assert read_result(sr.SpeedrunResult, tmp_path / "r").to_dict() == result.to_dict()


def test_the_t_tests_words_are_correct_statistics_and_never_round_p_to_one(tmp_path):
    """p is the chance of a t AT LEAST this large (not 'this large'); a mean below the target is not headed
    'mean above 99.5%:' as if it were; a p of 0.996 is not printed 'p = 1' (a certainty no test gives)."""
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    seeds = [
        sr.SeedResult(i, a, round(a * 100), 10000, 4.0, 4.0, 0.0, 0.1, 0.1) for i, a in enumerate([98.96, 99.09, 99.08])
    ]
    result = _result(seeds, target=99.5)
    assert result.target_test.p > 0.99
    line = result.details()
    assert (
        "mean above 99.5%? t = -10.93, p > 0.99 (one-sided t-test over 3 seeds; p is the chance of a t at least "
        "this large if the true mean were 99.5%, smaller still for any lower mean)" == result.test_words()
    )
    assert "t = -10.93, p > 0.99 (one-sided t-test over 3 seeds)" in line
    assert "p = 1 " not in line and "mean above 99.5%:" not in line
    doc = Document("t")
    speedrun_section(doc, result)
    md = doc.to_markdown(tmp_path)
    assert "| &gt; 0.99 |" in md and "\n\nMean above 99.5%? t = -10.93, p &gt; 0.99" in md  # '>' escaped


def test_the_report_gives_one_seed_no_spread_and_says_when_seeds_missed_the_target(tmp_path):
    """One seed has no standard deviation (the table said '± 0.00', the line 'no spread with one'); and a
    section headed 'time to 99.5%' whose seeds did not reach 99.5% says that its times are the recipe's."""
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    def md(accs, target):
        seeds = [sr.SeedResult(i, a, round(a * 100), 10000, 4.0, 4.0, 0.0, 0.1, 0.1) for i, a in enumerate(accs)]
        doc = Document("t")
        speedrun_section(doc, _result(seeds, target=target))
        return doc.to_markdown(tmp_path)

    one = md([98.96], 99.0)
    assert "± 0.00" not in one and "| 98.96% (1 seed, no spread) |" in one
    assert "0 of 1 seed reached 99%: the times are those of the recipe's 1 epoch, not times to 99%." in one
    assert "times to 99%" in md([98.96, 99.2], 99.0)  # 1 of 2 missed
    assert "times to 99%" not in md([99.1, 99.2], 99.0)  # every seed reached it


def test_one_seeds_time_has_no_median_or_range():
    """'median 0.77 s (range 0.77-0.77 s)' for one seed said a spread it does not have."""
    seeds = [sr.SeedResult(0, 99.0, 9900, 10000, 0.77, 0.74, 0.03, 0.01, 0.1)]
    result = _result(seeds)
    assert "time to train + evaluate  0.77 s (1 seed, no range)" in result.details()
    assert "range 0.77" not in result.details() and "range 0.77" not in result._repr_html_()
    two = _result(seeds + [sr.SeedResult(1, 99.1, 9910, 10000, 0.81, 0.78, 0.03, 0.01, 0.1)])
    assert "median 0.79 s (range 0.77-0.81 s)" in two.details()


def test_a_spread_just_over_the_limit_is_not_printed_as_the_limit():
    """10.4% printed as '10%' made 'its 3 repeats spread over 10% of their median (more than 10%)' (as
    docs/benchmarks.md quotes): the spread is printed with the digits that show it is over."""
    from mnistlab.core.timing import stability

    reason = stability([1.0, 1.104, 1.0]).reason
    assert "spread over 10.4% of their median (more than 10%)" in reason
    assert "spread over 25% of their median" in stability([1.0, 1.25, 1.0]).reason


@pytest.mark.slow
def test_the_record_line_and_report_name_the_dataset(tiny, tmp_path, capsys):
    """speedrun.json did not record the dataset: a --dataset fashion-mnist speedrun read, in its line and the
    report, as an MNIST one that missed 99% by 12 points. An older file without the key still reads."""
    from mnistlab.core.schema import read_result
    from mnistlab.report.document import Document
    from mnistlab.report.sections.speedrun import speedrun_section

    assert run_cli(tmp_path, "--seeds", "1", "--target", "50") == 0
    assert "speednet on tiny, cpu (" in capsys.readouterr().out
    result = read_result(sr.SpeedrunResult, tmp_path / "s")
    assert result.dataset == "tiny" and result.to_dict()["dataset"] == "tiny"
    doc = Document("t")
    speedrun_section(doc, result)
    assert "| speednet | Adam (beta2 0.95), one-cycle schedule" in doc.to_markdown(tmp_path)
    assert "| 640 (tiny) |" in doc.to_markdown(tmp_path)  # 80% of 3 batches rounds up to all 3
    data = json.loads((tmp_path / "s" / sr.SpeedrunResult.FILE).read_text())
    del data["dataset"]
    (tmp_path / "s" / sr.SpeedrunResult.FILE).write_text(json.dumps(data))
    older = read_result(sr.SpeedrunResult, tmp_path / "s")
    assert older.dataset is None and "speednet on cpu (" in older.details()

"""`mnistlab speedrun` end to end on tiny data (not timed: a fake clock checks what the time covers)."""

import json

import pytest
import torch

from mnistlab import cli
from mnistlab.measure import speedrun as sr
from mnistlab.training.levers import Levers


def run_cli(tmp_path, *extra):
    return cli.main(["speedrun", "--dataset", "tiny", "--device", "cpu", "--out", str(tmp_path / "s"), *extra])


def test_speedrun_end_to_end_on_tiny_data(tiny, tmp_path, capsys):
    assert run_cli(tmp_path, "--seeds", "2", "--target", "50", "--no-channels-last") == 0
    out = capsys.readouterr().out
    assert "2 seeds" in out and "reached 50%" in out and "median" in out
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

    from mnistlab.report.runs import run_levers_text
    from mnistlab.report.sections.speedrun import speedrun_section
    from mnistlab.report.document import Document

    doc = Document("t")
    result = sr.SpeedrunResult.from_dict(data)
    assert result.to_dict() == data  # round trip
    assert data["summary"]["time_stability"]["stable"] is result.stability.stable
    speedrun_section(doc, result)
    md = doc.to_markdown(tmp_path)
    assert "Speedrun: time to 50% test accuracy" in md and f"{runs[1]['accuracy']:.2f}% ({runs[1]['correct']}/200)" in md
    assert run_levers_text({"precision": "bf16-mixed", "channels_last": True}) == "eager bf16-mixed + channels-last"
    assert run_levers_text({}) == "eager fp32"  # an old run's config.json


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_the_time_covers_training_and_the_whole_evaluation_and_nothing_else(tiny, monkeypatch):
    """Each step costs 1 s, the full test evaluation 1000 s, the warm-up's evaluation 50 s, loading 10^6 s."""
    from mnistlab.data.datasets import data_root, get_dataset
    from mnistlab.data.loader import read_split

    clock = FakeClock()
    monkeypatch.setattr(sr, "time", clock)
    real_make_step, real_eval, real_loader = sr.make_step, sr.evaluate, sr.DeviceLoader

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

    monkeypatch.setattr(sr, "make_step", make_step)
    monkeypatch.setattr(sr, "evaluate", evaluate)
    monkeypatch.setattr(sr, "DeviceLoader", loader)
    spec, root = get_dataset("tiny"), data_root(None)
    recipe = sr.Recipe(batch_size=128, epochs=2, warmup_steps=3)
    result = sr.speedrun(read_split(spec, root, True), read_split(spec, root, False), spec, torch.device("cpu"),
                         seeds=1, target=10, recipe=recipe, levers=Levers(), log=lambda m: None)
    r = result.seeds[0]
    steps = 2 * 5  # two epochs of 640 / 128
    assert (r.train_s, r.eval_s, r.seconds) == (steps, 1000, steps + 1000)
    assert r.warmup_s == 3 + 50 and result.data_s == 2e6
    assert r.total == 200


def test_a_busy_machine_is_said_in_the_line_and_the_record(tiny, monkeypatch):
    """Timings taken while other processes held the cores are not the machine's: the result says so."""
    from mnistlab.data.datasets import data_root, get_dataset
    from mnistlab.data.loader import read_split

    loads = iter([{"load_avg_1m": 0.5, "cpu_count": 2}, {"load_avg_1m": 4.2, "cpu_count": 2}])
    monkeypatch.setattr(sr, "load_snapshot", lambda: next(loads))
    spec, root = get_dataset("tiny"), data_root(None)
    result = sr.speedrun(read_split(spec, root, True), read_split(spec, root, False), spec, torch.device("cpu"),
                         seeds=1, recipe=sr.Recipe(batch_size=320), levers=Levers(), log=lambda m: None)
    assert "unstable" in result.line() and "4.2 at the end" in result.line()
    assert result.to_dict()["machine_busy"] == result.machine_busy and result.to_dict()["load"]["end"]["load_avg_1m"] == 4.2
    quiet = sr.SpeedrunResult(result.recipe, result.levers, "cpu", "x", 99.0, 0.0, 1, 1, seeds=result.seeds * 2,
                              load={"start": {"load_avg_1m": 0.5, "cpu_count": 2}, "end": {"load_avg_1m": 1.9, "cpu_count": 2}})
    assert quiet.machine_busy is None and "unstable" not in quiet.line()


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


@pytest.mark.parametrize("extra, words", [
    (["--precision", "16-mixed"], "16-mixed needs a CUDA GPU"),
    (["--cuda-graphs"], "--cuda-graphs needs a CUDA GPU"),
])
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
    assert cli.main(["speedrun", "--dataset", "tiny", "--device", "cuda", "--seeds", "2", "--target", "50",
                     "--out", str(tmp_path / "s")]) == 0
    data = json.loads((tmp_path / "s" / "speedrun.json").read_text())
    assert data["levers"]["cuda_graphs"] is True and all(r["total"] == 200 for r in data["runs"])
    assert data["summary"]["accuracy_mean"] > 50



@pytest.mark.parametrize("damage, field", [(lambda d: d["runs"][0].pop("seconds"), "seconds"),
                                           (lambda d: d["recipe"].update(epochs="one"), "epochs"),
                                           (lambda d: d.update(runs=[]), "runs")])
def test_a_malformed_speedrun_json_is_one_line_naming_the_file_and_field(tmp_path, damage, field):
    from mnistlab.core.errors import CheckpointError
    from mnistlab.core.schema import read_result

    seeds = [sr.SeedResult(s, 99.0, 198, 200, 4.0 + s, 3.5, 0.5, 0.2, 0.1) for s in range(2)]
    data = sr.SpeedrunResult(sr.Recipe(), Levers(), "cpu", "a CPU", 99.0, 0.3, 640, 200, 1000, seeds).to_dict()
    damage(data)
    (tmp_path / "speedrun.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        read_result(sr.SpeedrunResult, tmp_path)
    message = str(e.value)
    assert str(tmp_path / "speedrun.json") in message and field in message and "\n" not in message


def test_speedrun_times_are_judged_by_the_one_stability_rule():
    def result(times):
        seeds = [sr.SeedResult(i, 99.0, 198, 200, t, t, 0.0, 0.2, 0.1) for i, t in enumerate(times)]
        return sr.SpeedrunResult(sr.Recipe(), Levers(), "cpu", "a CPU", 99.0, 0.3, 640, 200, 1000, seeds)

    assert result([4.0, 4.1, 4.05]).stability.stable
    assert not result([4.0, 5.0]).stability.stable and "unstable" in result([4.0, 5.0]).line()
    assert "1 repeat, no range" in result([4.0]).line()

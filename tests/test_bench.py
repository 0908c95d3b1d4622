import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mnistlab.cli import main
from mnistlab.core.timing import UNSTABLE_SPREAD, Ratio, Spread, machine_stability
from mnistlab.data.datasets import DATASETS
from mnistlab.data.loader import read_split
from mnistlab.jobs.bench import write_bench
from mnistlab.measure.bench import (
    PHASES,
    BenchResult,
    Cell,
    _Setup,
    bound_label,
    format_table,
    observations,
    run_bench,
    run_cells,
)
from mnistlab.measure.decomposition import DecomposeSettings

TARGETS = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_targets.py"


# a quick decomposition (the cell's batch, 64, is added): the test checks the wiring, not the figures
QUICK_DECOMPOSITION = DecomposeSettings((1, 8), repeats=2, chunk_s=0.002)


@pytest.fixture(scope="module")
def result(tiny_module):
    spec, root = tiny_module
    split = read_split(spec, root, train=True)
    return run_bench(
        split,
        spec,
        models=["mlp", "cnn"],
        devices=["cpu"],
        pipelines=["reference", "resident"],
        steps=4,
        repeats=2,
        warmup=2,
        decomposition=QUICK_DECOMPOSITION,
        log=lambda m: None,
    )


@pytest.mark.slow
def test_every_cell_is_measured(result):
    assert [c.key for c in result.cells] == [
        "reference/cpu/mlp",
        "resident/cpu/mlp",
        "reference/cpu/cnn",
        "resident/cpu/cnn",
    ]
    for c in result.cells:
        assert len(c.step_s) == 2 and all(t > 0 for t in c.step_s)
        assert len(c.warmup_s) == 2 and all(t > 0 for t in c.warmup_s)  # reported apart from the steady state
        assert c.extrapolated and c.steps_per_epoch == 10 and c.epoch_s_median == pytest.approx(10 * c.step_median_s)
        assert c.epoch_s_min <= c.epoch_s_median <= c.epoch_s_max
        assert c.peak_flops_per_s > 0 and 0 < c.utilisation <= 1  # of a ceiling: never above 100% (issue 23)
        assert c.floors is not None and c.train_step_ops > 0 and c.train_step_bytes > 0
        # every cell reads its model's measured decomposition (issue 27): its bound is the decomposition's
        assert c.decomposition is result.decomposition("cpu", c.model, 64) is not None
        assert c.bound == "input" or (c.bound == c.decomposition.binds and c.judged_by == "decomposition")
        assert set(c.phases_s) == set(PHASES)
    assert result.cell("resident", "cpu", "mlp").train_step_flops == 64 * 454_400
    # the step's convolution FLOPs are recorded, so that a GPU prediction counts the rest at the FP32 rate
    assert result.cell("resident", "cpu", "mlp").train_step_conv_flops == 0
    cnn = result.cell("resident", "cpu", "cnn")
    assert 0 < cnn.train_step_conv_flops < cnn.train_step_flops
    assert [d.model for d in result.decompositions] == ["mlp", "cnn"]
    for d in result.decompositions:  # at the cells' batch and thread count, with the bench's count reused
        cell = result.cell("resident", "cpu", d.model)
        assert sorted(d.timings) == [1, 8, 64] and d.threads == result.ceilings["cpu"]["threads"] and d.batch_size == 64
        assert d.counted[64] == (cell.train_step_flops, cell.train_step_bytes, cell.train_step_ops)
        assert d.compute_flops_per_s == cell.peak_flops_per_s and "DRAM" in d.bandwidths
    assert result.settings["decomposition"] == {"batches": [1, 8], "repeats": 2, "chunk_s": 0.002}
    assert set(result.load) == {"start", "end"} and result.load["start"]["cpu_count"] >= 1


@pytest.mark.slow
def test_phase_shares_sum_to_100_percent_and_the_rest_is_timer_overhead(result):
    for c in result.cells:
        assert sum(c.share(p) for p in PHASES) == pytest.approx(1.0)
        assert c.timer_overhead_s == pytest.approx(max(0.0, c.instrumented_step_s - sum(c.phases_s.values())))


def _fake_setup(name, log):
    return _Setup(
        name,
        torch.device("cpu"),
        "resident",
        "fake",
        10,
        3,
        lambda: log.append(name),
        lambda clock: None,
        DATASETS["mnist"].shape,
    )


def test_repeats_are_interleaved_across_cells():
    log: list[str] = []
    a, b = _fake_setup("A", log), _fake_setup("B", log)
    run_cells([a, b], repeats=2, warmup=1)
    assert "".join(log) == "A" + "B" + "AAA" + "BBB" + "AAA" + "BBB"
    assert len(a.warmup_s) == 1 and len(a.step_s) == 2


BUSY = {"start": {"load_avg_1m": 3.5, "cpu_count": 2}, "end": {"load_avg_1m": 3.0, "cpu_count": 2}}


def _cell(step_s, load=None):
    return Cell(
        model="mlp",
        device="cpu",
        pipeline="resident",
        pipeline_detail="x",
        batch_size=64,
        steps_timed=10,
        repeats=len(step_s),
        steps_per_epoch=10,
        extrapolated=False,
        step_s=list(step_s),
        warmup_s=[0.5],
        phases_s=dict.fromkeys(PHASES, 0.1),
        instrumented_step_s=0.6,
        train_step_flops=1,
        peak_flops_per_s=1.0,
        load=load or {},
    )


def test_spread_and_the_instability_rule():
    s = Spread.of([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.min, s.max, s.n, s.rel_range) == (3.0, 1.0, 5.0, 5, 4 / 3)
    assert _cell([1.0, 1.05, 1.02]).stability.stable
    unstable = _cell([1.0, 1.0 + 2 * UNSTABLE_SPREAD, 1.05]).stability
    assert not unstable.stable and unstable.reason.startswith("unstable:") and "rerun" in unstable.reason
    busy = _cell([1.0, 1.01], BUSY).stability
    assert not busy.stable and busy.reason.startswith("unstable: another process used the CPU")
    one = _cell([1.0]).stability  # one repeat has no range: not evidence of a stable figure
    assert not one.stable and "1 repeat, no range" in one.reason


def test_the_load_check_says_when_the_machine_was_busy():
    quiet, busy = {"load_avg_1m": 0.5, "cpu_count": 2}, {"load_avg_1m": 3.5, "cpu_count": 2}
    assert machine_stability({"start": quiet, "end": quiet}).stable
    words = machine_stability({"start": quiet, "end": busy}).reason
    assert words.startswith("unstable: another process used the CPU") and "3.5 at the end" in words
    assert machine_stability({"start": {"load_avg_1m": None, "cpu_count": 2}, "end": None}).stable  # no claim


def _ratio(ratios):
    return Ratio.paired(ratios, [1.0] * len(ratios))


def test_ratios_are_said_with_their_range_and_never_as_a_fraction_faster():
    # the figure is the median of the paired ratios, and the words say so, beside the ratio of the medians
    assert _ratio([12.0, 9.0, 14.0]).words() == (
        "12.0x faster (median of 3 paired ratios, 9.0\u201314.0x; ratio of the medians 12.0x)"
    )
    assert (
        _ratio([0.7, 0.7]).words()
        == "1.4x slower (median of 2 paired ratios, 1.4\u20131.4x; ratio of the medians 1.4x)"
    )
    # the case: paired ratios 6.6, 7.0, 7.8 of steps whose medians are 4.092 and 0.610 ms
    r = Ratio.paired([4.092, 4.29, 3.9], [0.62, 0.61, 0.5])
    assert r.median == pytest.approx(4.29 / 0.61) and r.of_medians == pytest.approx(4.092 / 0.610)
    assert r.words() == "7.0x faster (median of 3 paired ratios, 6.6\u20137.8x; ratio of the medians 6.7x)"
    assert Ratio(r.ratios, r.stability).words().endswith("x)")  # no medians known: no second figure
    assert "0.7x" not in _ratio([0.7, 0.65, 0.75]).words()
    assert _ratio([0.9, 1.2]).words() == (
        "not clearly different: from 1.11x slower to 1.20x faster over 2 paired repeats (ratio of the medians 1.05)"
    )
    assert _ratio([2.0]).words() == "2.0x faster (1 repeat, no range)"
    # the one stability rule judges a ratio too: 1 repeat, a wide range, a busy machine
    assert not _ratio([2.0]).stability.stable and "1 repeat, no range" in _ratio([2.0]).marked()
    assert not _ratio([12.0, 9.0, 14.0]).stability.stable and _ratio([2.0, 2.1, 2.05]).stability.stable
    assert not Ratio.paired([2.0, 2.0], [1.0, 1.0], BUSY).stability.stable


@pytest.mark.slow
def test_observations_and_speedups_come_from_the_numbers(result):
    notes = observations(result)
    for c in result.cells:
        line = next(n for n in notes if n.startswith(c.key + ":") and "ms per step" in n)
        assert f"{c.step_median_s * 1e3:.2f} ms per step" in line and "over 2 repeats" in line
        assert bound_label(c.bound) in line
        assert (f"{c.key}: {c.stability.reason}" in notes) == (
            not c.stability.stable and c.stability.reason != result.machine_busy
        )
    ups = {u.what: u for u in result.speedups()}
    mlp = ups["mlp on cpu: resident vs the notebook's pipeline"]
    ref, res = result.cell("reference", "cpu", "mlp"), result.cell("resident", "cpu", "mlp")
    assert list(mlp.ratio.ratios) == pytest.approx([a / b for a, b in zip(ref.step_s, res.step_s, strict=True)])
    assert mlp.to_dict()["words"] == mlp.ratio.words()
    # each figure reconciles by hand with the table: the ratio of its medians, and data's share of its step
    assert mlp.ratio.of_medians == pytest.approx(ref.step_median_s / res.step_median_s)
    assert "ratio of the medians" in mlp.ratio.words()  # faster, slower or not clearly different: always said
    said = next(n for n in notes if n.startswith("mlp on cpu, the resident pipeline"))
    assert (
        f"{ref.share('data'):.0%} of a {ref.step_median_s * 1e3:.2f} ms step, "
        f"{ref.share('data') * ref.step_median_s * 1e3:.2f} ms"
    ) in said and "instrumented pass" in said
    table = format_table(result)
    assert "reference/cpu/cnn" in table and "stability" in table


@pytest.mark.slow
def test_no_verdicts_where_the_user_sees_them(result, tmp_path):
    text = write_bench(result, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    for shown in (text, (tmp_path / "bench.txt").read_text(), json.dumps(data)):
        # the project's pass/fail speed floors are benchmarks/bench_targets.py's; a step's own time floors
        # (measure/ceilings.py) are measurements, and are shown
        assert "PASS" not in shown and "FAIL" not in shown and "speed floor" not in shown
    assert "targets" not in data and set(data["load"]) == {"start", "end"} and isinstance(data["warnings"], list)
    assert {"step_spread", "stability", "bound", "shares", "timer_overhead_s", "warmup_s"} <= set(data["cells"][0])
    assert "load average" in text


@pytest.mark.slow
def test_bench_json_round_trips_and_keeps_its_judgements(result, tmp_path):
    write_bench(result, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    back = BenchResult.from_dict(data)
    assert back.to_dict() == result.to_dict()
    data["ceilings"]["cpu"]["raised_to"] = None  # a file from before Ceilings.raised was removed still reads
    assert BenchResult.from_dict(data).ceilings["cpu"]["raised_to"] is None
    assert [(c.bound, c.stability) for c in back.cells] == [(c.bound, c.stability) for c in result.cells]
    # the measured ceiling says the thread count it is for (issue 27)
    threads = result.ceilings["cpu"]["threads"]
    text = (tmp_path / "bench.txt").read_text()
    assert isinstance(threads, int) and threads >= 1 and f" GFLOP/s on {threads} thread" in text


@pytest.mark.parametrize(
    "damage, field",
    [
        (lambda d: d["cells"][0].pop("step_s"), "'step_s'"),
        (lambda d: d["cells"][1]["phases_s"].update(forward="fast"), "phases_s.forward"),
        (lambda d: d.update(cells={}), "'cells'"),
        (lambda d: d["settings"].update(repeats=None), "repeats"),
        (lambda d: d["cells"][0].update(step_s=[]), "step_s"),  # nothing to take a median of
        (lambda d: d["cells"][2].update(step_s=[0.01, 0.0]), "step_s[1]"),  # a time a reader divides by
        (lambda d: d["decompositions"][1].update(op_cost_s=-1.0), "decompositions[1]: field 'op_cost_s'"),
        (lambda d: d["decompositions"][0]["timings"][0].update(step_s=[]), "decompositions[0]: field 'timings'[0]"),
        (lambda d: d.update(decompositions="x"), "'decompositions'"),
    ],
)
@pytest.mark.slow
def test_a_malformed_bench_json_is_one_line_naming_the_file_and_field(result, tmp_path, damage, field):
    from mnistlab.core.errors import CheckpointError
    from mnistlab.core.schema import read_result

    data = json.loads(json.dumps(result.to_dict()))  # a copy: the fixture is shared
    damage(data)
    (tmp_path / "bench.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as e:
        read_result(BenchResult, tmp_path)
    message = str(e.value)
    assert str(tmp_path / "bench.json") in message and field in message and "\n" not in message


@pytest.mark.slow
def test_the_project_floors_live_in_benchmarks(result):
    spec = importlib.util.spec_from_file_location("bench_targets", TARGETS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = dict(module.target_checks(result))
    assert any("floor 10x" in k for k in checks) and any("compute-bound" in k for k in checks)
    assert all(" 2 paired " in k for k in checks if "(floor" in k)  # median of 2 paired ratios, or over 2 repeats


@pytest.mark.slow
def test_bench_cli_writes_json_png_and_text(tiny, capsys, tmp_path):
    code = main(
        [
            "bench",
            "--dataset",
            "tiny",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--models",
            "mlp",
            "--out",
            str(tmp_path / "b"),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and "resident/cpu/mlp" in out and out.strip().endswith(str(tmp_path / "b"))
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert len(data["cells"]) == 2 and data["observations"] and data["peaks_flops_per_s"]["cpu"] > 0
    assert (tmp_path / "b" / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "of each step is" in (tmp_path / "b" / "bench.txt").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_phase_shares_sum_to_100_percent(tiny_module):
    spec, root = tiny_module
    r = run_bench(
        read_split(spec, root, train=True),
        spec,
        models=["mlp"],
        devices=["cpu", "cuda"],
        pipelines=["resident"],
        steps=4,
        repeats=2,
        warmup=2,
        log=lambda m: None,
    )
    gpu = r.cell("resident", "cuda", "mlp")
    assert sum(gpu.share(p) for p in PHASES) == pytest.approx(1.0) and gpu.timer_overhead_s >= 0
    assert any(u.what == "resident/mlp: cuda vs the CPU" for u in r.speedups())


def test_profile_cli(capsys):
    assert main(["profile", "mlp", "cnn"]) == 0
    out, _ = capsys.readouterr()
    assert "454,400" in out and "101,578" in out and "MAC" in out
    assert main(["profile", "mlp", "--json", "--batch-size", "2"]) == 0
    assert json.loads(capsys.readouterr()[0])[0]["macs"] == 2 * 109_184


@pytest.mark.slow
def test_bench_text_says_each_speed_up_once(result, tmp_path):
    """bench.txt used to print each ratio twice, in two wordings; the observation (with its reason) stays."""
    from mnistlab.jobs.bench import write_bench

    text = write_bench(result, tmp_path)
    assert len(result.speedups()) == 2  # mlp and cnn: resident against the notebook's pipeline
    assert text.count("the resident pipeline against the notebook's") == 2
    assert "resident vs the notebook's pipeline" not in text  # the second wording, gone


def _floored(step_s, decomposition=None):
    """A resident CPU cell whose floors are the issue's CNN's: 13.376 ms of arithmetic (1.3376 GFLOP at 100
    GFLOP/s), 8.729 ms of memory traffic (87.29 MB at 10 GB/s), 0.17 ms for 85 operations."""
    return Cell(
        model="cnn",
        device="cpu",
        pipeline="resident",
        pipeline_detail="x",
        batch_size=64,
        steps_timed=10,
        repeats=len(step_s),
        steps_per_epoch=10,
        extrapolated=False,
        step_s=list(step_s),
        warmup_s=[0.5],
        phases_s={**dict.fromkeys(PHASES, 0.1), "data": 0.0, "h2d": 0.0},
        instrumented_step_s=0.6,
        train_step_flops=1_337_600_000,
        peak_flops_per_s=100e9,
        train_step_bytes=87_290_000,
        train_step_ops=85,
        bandwidth_bytes_per_s=10e9,
        op_cost_s=2e-6,
        decomposition=decomposition,
    )


def test_two_cells_with_equal_floors_get_the_same_label():
    """The issue's new user: two CNN cells with identical floors (13.376 / 8.729 ms), one called 'compute-bound'
    and the other 'between compute and memory', because the tolerance was the cell's own spread."""
    tight, wide = _floored([0.0400, 0.0404, 0.0408]), _floored([0.034, 0.040, 0.046])  # 2% and 30% spreads
    assert tight.floors.compute_s == wide.floors.compute_s == pytest.approx(13.376e-3)
    assert wide.step.rel_range > 0.25 > tight.step.rel_range
    assert tight.bound == wide.bound == "arithmetic" and tight.judged_by == wide.judged_by == "floors"
    # with a measured decomposition (the same for both: one model's step), both read it, whatever their spreads
    from fakes import fake_decomposition

    d = fake_decomposition("cnn", 0.3e-3, 600e-6, flops_per_sample=20_900_000)
    tight, wide = _floored([0.0400, 0.0404, 0.0408], d), _floored([0.034, 0.040, 0.046], d)
    assert tight.bound == wide.bound == d.binds == "arithmetic" and tight.judged_by == "decomposition"
    assert bound_label(tight.bound) == "bound by arithmetic" and bound_label("input") == "bound by its input"


def test_old_floor_labels_say_the_judgements_words():
    from mnistlab.measure.bench import floors_binds

    assert floors_binds("compute") == "arithmetic" and floors_binds("overhead") == "fixed per-step cost"
    assert floors_binds("between compute and overhead") == "between fixed per-step cost and arithmetic"
    assert floors_binds("between memory and compute") == "between arithmetic and memory"


def test_a_gpu_speed_up_is_explained_by_the_gpu_cells_measured_judgement():
    """comparison_sentence's reasons in the judgement's words: a GPU step mostly fixed is explained by its
    launches, never as arithmetic; one bound by arithmetic by the GPU's larger ceiling."""
    from fakes import fake_decomposition

    from mnistlab.measure.bench import comparison_sentence

    def cell(device, steps):
        return Cell(
            model="mlp",
            device=device,
            pipeline="resident",
            pipeline_detail="x",
            batch_size=64,
            steps_timed=10,
            repeats=3,
            steps_per_epoch=10,
            extrapolated=False,
            step_s=steps,
            warmup_s=[0.5],
            phases_s={**dict.fromkeys(PHASES, 0.1), "data": 0.0, "h2d": 0.0},
            instrumented_step_s=0.6,
            train_step_flops=29_081_600,
            peak_flops_per_s=1e11 if device == "cpu" else 5e13,
            train_step_bytes=4_088_368,
            train_step_ops=59,
            bandwidth_bytes_per_s=1e10,
            op_cost_s=2e-6,
        )

    ceilings = {"cpu": {"bandwidth_bytes_per_s": 1e10}, "cuda": {"bandwidth_bytes_per_s": 2e12}}
    for gpu_part, said, never in (
        ((0.3e-3, 0.5e-6), "its fixed per-step cost (", "bound by arithmetic"),
        ((0.01e-3, 50e-6), "the cuda step is bound by arithmetic", "fixed per-step cost"),
    ):
        gpu = fake_decomposition("mlp", *gpu_part, device="cuda")
        result = BenchResult(
            [cell("cpu", [0.6e-3, 0.61e-3, 0.62e-3]), cell("cuda", [0.3e-3, 0.31e-3, 0.32e-3])],
            {"cpu": 1e11, "cuda": 5e13},
            {"cpu": "a CPU", "cuda": "a GPU"},
            {"batch_size": 64},
            ceilings=ceilings,
            decompositions=[gpu],
        )
        (u,) = result.speedups()
        sentence = comparison_sentence(result, u)
        assert result.cell("resident", "cuda", "mlp").bound == gpu.binds and said in sentence, sentence
        assert never not in sentence, sentence

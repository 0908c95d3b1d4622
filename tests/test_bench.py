import importlib.util
import json
from pathlib import Path

import pytest
import torch

from mnistlab.cli import main
from mnistlab.core.environment import machine_was_busy
from mnistlab.data.loader import read_split
from mnistlab.measure.bench import (PHASES, UNSTABLE_SPREAD, Cell, _Setup, format_table, observations, ratio_words,
                                    run_bench, run_cells, speedups, spread, write_bench)

TARGETS = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_targets.py"


@pytest.fixture(scope="module")
def result(tiny_module):
    spec, root = tiny_module
    split = read_split(spec, root, train=True)
    return run_bench(split, spec, models=["mlp", "cnn"], devices=["cpu"], pipelines=["reference", "resident"],
                     steps=4, repeats=2, warmup=2, log=lambda m: None)


def test_every_cell_is_measured(result):
    assert [c.key for c in result.cells] == ["reference/cpu/mlp", "resident/cpu/mlp",
                                              "reference/cpu/cnn", "resident/cpu/cnn"]
    for c in result.cells:
        assert len(c.step_s) == 2 and all(t > 0 for t in c.step_s)
        assert len(c.warmup_s) == 2 and all(t > 0 for t in c.warmup_s)  # reported apart from the steady state
        assert c.extrapolated and c.steps_per_epoch == 10 and c.epoch_s_median == pytest.approx(10 * c.step_median_s)
        assert c.epoch_s_min <= c.epoch_s_median <= c.epoch_s_max
        assert c.peak_flops_per_s > 0 and 0 < c.utilisation
        assert set(c.phases_s) == set(PHASES)
    assert result.cell("resident", "cpu", "mlp").train_step_flops == 64 * 454_400
    assert set(result.load) == {"start", "end"} and result.load["start"]["cpu_count"] >= 1


def test_phase_shares_sum_to_100_percent_and_the_rest_is_timer_overhead(result):
    for c in result.cells:
        assert sum(c.share(p) for p in PHASES) == pytest.approx(1.0)
        assert c.timer_overhead_s == pytest.approx(max(0.0, c.instrumented_step_s - sum(c.phases_s.values())))


def _fake_setup(name, log):
    return _Setup(name, torch.device("cpu"), "resident", "fake", 10, 3, lambda: log.append(name), lambda clock: None)


def test_repeats_are_interleaved_across_cells():
    log: list[str] = []
    a, b = _fake_setup("A", log), _fake_setup("B", log)
    run_cells([a, b], repeats=2, warmup=1)
    assert "".join(log) == "A" + "B" + "AAA" + "BBB" + "AAA" + "BBB"
    assert len(a.warmup_s) == 1 and len(a.step_s) == 2


def _cell(step_s, busy=None):
    return Cell(model="mlp", device="cpu", pipeline="resident", implementation="x", batch_size=64, steps_timed=10,
                repeats=len(step_s), steps_per_epoch=10, extrapolated=False, step_s=list(step_s), warmup_s=[0.5],
                phases_s=dict.fromkeys(PHASES, 0.1), instrumented_step_s=0.6, train_step_flops=1, peak_flops_per_s=1.0,
                machine_busy=busy)


def test_spread_and_the_instability_rule():
    s = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["median"], s["min"], s["max"], s["q1"], s["q3"]) == (3.0, 1.0, 5.0, 2.0, 4.0)
    assert _cell([1.0, 1.05, 1.02]).stability is None
    unstable = _cell([1.0, 1.0 + 2 * UNSTABLE_SPREAD, 1.05]).stability
    assert unstable.startswith("unstable:") and "rerun" in unstable
    assert _cell([1.0, 1.01], busy="unstable: busy").stability == "unstable: busy"


def test_the_load_check_says_when_the_machine_was_busy():
    quiet, busy = {"load_avg_1m": 0.5, "cpu_count": 2}, {"load_avg_1m": 3.5, "cpu_count": 2}
    assert machine_was_busy(quiet, quiet) is None
    words = machine_was_busy(quiet, busy)
    assert words.startswith("unstable: another process used the CPU") and "3.5 at the end" in words
    assert machine_was_busy({"load_avg_1m": None, "cpu_count": 2}, None) is None  # no load average: no claim


def test_ratios_are_said_with_their_range_and_never_as_a_fraction_faster():
    assert ratio_words([12.0, 9.0, 14.0]) == "12.0x faster (9.0\u201314.0x over 3 repeats)"
    assert ratio_words([0.7, 0.7]) == "1.4x slower (1.4\u20131.4x over 2 repeats)"
    assert "0.7x" not in ratio_words([0.7, 0.65, 0.75])
    assert ratio_words([0.9, 1.2]).startswith("not clearly different")
    assert ratio_words([2.0]) == "2.0x faster (1 repeat, no range)"


def test_observations_and_speedups_come_from_the_numbers(result):
    notes = observations(result)
    for c in result.cells:
        line = next(n for n in notes if n.startswith(c.key + ":") and "ms per step" in n)
        assert f"{c.step_median_s * 1e3:.2f} ms per step" in line and "over 2 repeats" in line
        assert (f"{c.key}: {c.stability}" in notes) == bool(c.stability and c.stability != result.machine_busy)
    ups = {s["what"]: s for s in speedups(result)}
    mlp = ups["mlp on cpu: resident vs the notebook's pipeline"]
    ref, res = result.cell("reference", "cpu", "mlp"), result.cell("resident", "cpu", "mlp")
    assert mlp["ratios"] == pytest.approx([a / b for a, b in zip(ref.step_s, res.step_s)])
    assert mlp["words"] == ratio_words(mlp["ratios"])
    table = format_table(result)
    assert "reference/cpu/cnn" in table and "stability" in table


def test_no_verdicts_where_the_user_sees_them(result, tmp_path):
    text = write_bench(result, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    for shown in (text, (tmp_path / "bench.txt").read_text(), json.dumps(data)):
        assert "PASS" not in shown and "FAIL" not in shown and "floor" not in shown
    assert "targets" not in data and set(data["load"]) == {"start", "end"} and isinstance(data["warnings"], list)
    assert {"step_spread", "stability", "shares", "timer_overhead_s", "warmup_s"} <= set(data["cells"][0])
    assert "load average" in text


def test_the_project_floors_live_in_benchmarks(result):
    spec = importlib.util.spec_from_file_location("bench_targets", TARGETS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    checks = dict(module.target_checks(result))
    assert any("floor 10x" in k for k in checks) and any("compute-bound" in k for k in checks)
    assert all(" over 2 repeats" in k for k in checks if "floor" in k)


def test_bench_cli_writes_json_png_and_text(tiny, capsys, tmp_path):
    code = main(["bench", "--dataset", "tiny", "--steps", "2", "--repeats", "1", "--warmup", "1",
                 "--models", "mlp", "--out", str(tmp_path / "b")])
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
    r = run_bench(read_split(spec, root, train=True), spec, models=["mlp"], devices=["cpu", "cuda"],
                  pipelines=["resident"], steps=4, repeats=2, warmup=2, log=lambda m: None)
    gpu = r.cell("resident", "cuda", "mlp")
    assert sum(gpu.share(p) for p in PHASES) == pytest.approx(1.0) and gpu.timer_overhead_s >= 0
    assert any(s["what"] == "resident/mlp: cuda vs the CPU" for s in speedups(r))


def test_profile_cli(capsys):
    assert main(["profile", "mlp", "cnn"]) == 0
    out, _ = capsys.readouterr()
    assert "454,400" in out and "101,578" in out and "MAC" in out
    assert main(["profile", "mlp", "--json", "--batch-size", "2"]) == 0
    assert json.loads(capsys.readouterr()[0])[0]["macs"] == 2 * 109_184

"""Ceilings measured as ceilings, and a step's bound judged from its own floors (issue 23)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from mnistlab.core.timing import Load
from mnistlab.measure.ceilings import (
    Ceilings,
    Floors,
    StepCost,
    Theoretical,
    count_forward,
    count_step,
    measure_ceilings,
    step_cost,
)
from mnistlab.measure.profiling import profile_model
from mnistlab.measure.stepcell import StepCell
from mnistlab.training.models import create_model

CEIL = Ceilings(
    "cpu",
    "float32",
    compute_flops_per_s=1e11,
    best_shape="matmul",
    bandwidth_bytes_per_s=1e10,
    op_cost_s=1e-5,
    theoretical=Theoretical(None, "not derived"),
)


def test_floors_arithmetic_on_a_step_known_by_hand():
    f = Floors.of(StepCost(flops=2_000_000_000, bytes=100_000_000, ops=100), CEIL, measured_s=0.040, spread=0.02)
    assert (f.compute_s, f.memory_s, f.overhead_s) == pytest.approx((0.020, 0.010, 0.001))
    assert f.bound == "compute" and f.closeness == pytest.approx(0.5)
    assert "compute-bound" in f.words() and "50% of the 40.00 ms measured" in f.words()


def test_close_floors_are_never_given_a_single_bound():
    # 20 ms of arithmetic, 19 ms of per-operation costs: within FLOOR_TOLERANCE (25%), either could be first
    f = Floors.of(StepCost(flops=2_000_000_000, bytes=0, ops=1900), CEIL, measured_s=0.05, spread=0.10)
    assert f.bound == "between compute and overhead" and "-bound" not in f.words()
    assert Floors.of(StepCost(2_000_000_000, 0, 1500), CEIL, 0.05, spread=0.01).bound == "compute"


def test_equal_floors_get_equal_labels_whatever_the_spread():
    """The issue's two CNN cells: identical floors (13.376 ms of arithmetic, 8.729 ms of memory traffic), one
    measured with a 2% spread and one with 40%, were called 'compute-bound' and 'between compute and memory'."""
    floors = [Floors(13.376e-3, 8.729e-3, 0.2e-3, 0.040, spread) for spread in (0.02, 0.40)]
    assert floors[0].bound == floors[1].bound == "compute"
    close = [Floors(13.376e-3, 11.0e-3, 0.2e-3, 0.040, spread) for spread in (0.0, 0.02, 0.40)]
    assert {f.bound for f in close} == {"between compute and memory"}


@dataclass
class _Step(StepCell):
    step_s: list[float]
    train_step_flops: int
    peak_flops_per_s: float
    load: Load = field(default_factory=dict)


def test_a_step_faster_than_every_probe_raises_the_ceiling():
    raised = _Step([0.1], 15_000_000_000, CEIL.compute_flops_per_s)  # 1.5e11 FLOP/s
    assert raised.ceiling_raised and raised.ceiling_flops_per_s == pytest.approx(1.5e11)
    assert raised.utilisation == pytest.approx(1.0)
    slower = _Step([0.1], 5_000_000_000, CEIL.compute_flops_per_s)
    assert not slower.ceiling_raised and slower.ceiling_flops_per_s == CEIL.compute_flops_per_s


@pytest.mark.slow
def test_measured_ceilings_on_this_cpu():
    c = measure_ceilings(torch.device("cpu"), seconds=0.02)
    assert c.compute_flops_per_s > 0 and c.bandwidth_bytes_per_s > 0 and 0 < c.op_cost_s < 1e-2
    assert "FMA" in c.theoretical.derivation or "not derived" in c.theoretical.derivation


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_training_step_is_counted_whole(name):
    model = create_model(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    cost = step_cost(model, torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)), opt)
    assert cost.flops == profile_model(name, 8).train_step_flops
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert cost.bytes > 3 * params  # weights read forward and backward, gradients written, SGD reads both
    assert 10 < cost.ops < 1000


def test_a_step_is_counted_with_the_optimizer_given_and_a_forward_pass_alone():
    """mlp (784-128-64-10): a forward pass is 2*in*out FLOPs an image per layer; a training step adds the
    weights' gradients and the inputs' (not the image's). Adam's update has no counted FLOPs, as SGD's."""
    from mnistlab.data.datasets import DataShape

    shape = DataShape((1, 28, 28), 10)
    layers = [(784, 128), (128, 64), (64, 10)]
    forward = sum(2 * i * o for i, o in layers)
    assert count_forward("mlp", shape, 7) == 7 * forward
    step = 2 * forward + sum(2 * i * o for i, o in layers[1:])
    adam = count_step("mlp", shape, 5, lambda m: torch.optim.Adam(m.parameters(), lr=0.01))
    assert adam.flops == count_step("mlp", shape, 5).flops == 5 * step
    assert adam.bytes > count_step("mlp", shape, 5).bytes  # but Adam does read and write more state than SGD


# --- theoretical ceilings that bound (issue 27) ---------------------------------------------------------

from mnistlab.measure.ceilings import (  # noqa: E402
    AMX_BF16_FLOP_PER_CYCLE,
    bandwidth_for,
    cache_sizes,
    cpu_facts,
    probe_sizes,
    theoretical_cpu,
)

# the Xeon as its VM shows it: cpu MHz is the base clock, 2100
XEON_CPUINFO = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2100.000\n"
    "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)
ZEN4_CPUINFO = "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.138\nflags\t\t: fpu avx2 fma avx512f avx512_bf16\n"


def _cpufreq(tmp_path, khz):
    for cpu, k in enumerate(khz):
        (tmp_path / f"cpu{cpu}" / "cpufreq").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq").write_text(f"{k}\n")
    return tmp_path


def test_theoretical_fp32_is_from_the_highest_stated_clock_never_cpu_mhz(tmp_path):
    facts = cpu_facts(ZEN4_CPUINFO, _cpufreq(tmp_path, [3_700_000, 3_500_000]), lscpu="", cpus=2, caches={})
    assert facts.max_hz == 3.7e9 and facts.stated_mhz == pytest.approx(2596.138) and "cpufreq" in facts.clock_source
    t = theoretical_cpu(torch.float32, facts, threads=2)
    assert t.flops_per_s == pytest.approx((2 * 3.7e9 * 32, 2 * 3.7e9 * 64)) and "3.70 GHz" in t.derivation
    # on 1 thread: 1 core's worth, said so
    one = theoretical_cpu(torch.float32, facts, threads=1)
    assert one.flops_per_s == pytest.approx((3.7e9 * 32, 3.7e9 * 64)) and one.derivation.startswith("1 core ")
    # no cpufreq: lscpu's CPU max MHz
    lscpu = "Model name: AMD EPYC\nCPU max MHz:                        3500.0000\nCPU min MHz: 1500.0000\n"
    via_lscpu = cpu_facts(ZEN4_CPUINFO, tmp_path / "none", lscpu=lscpu, cpus=2, caches={})
    assert via_lscpu.max_hz == 3.5e9 and via_lscpu.clock_source == "lscpu's CPU max MHz"


def test_without_a_stated_clock_there_is_no_theoretical_figure(tmp_path):
    facts = cpu_facts(XEON_CPUINFO, tmp_path / "none", lscpu="Model name: Xeon\n", cpus=2, caches={})
    assert facts.max_hz is None and facts.stated_mhz == 2100.0
    t = theoretical_cpu(torch.float32, facts, threads=2)
    assert t.flops_per_s is None and "the clock is unknown" in t.derivation and "is not used" in t.derivation
    # a measurement says what clock it needs, and a figure is still not made up
    checked = t.checked(314e9)
    assert checked.flops_per_s is None and "needs at least 2.45 GHz at 64 FLOP per cycle" in checked.derivation


def test_a_theoretical_figure_is_never_below_a_measured_one(tmp_path):
    # the machine, had it stated 2.10 GHz: 134-269 GFLOP/s beside a measured 314
    facts = cpu_facts(XEON_CPUINFO, _cpufreq(tmp_path, [2_100_000]), lscpu="", cpus=2, caches={})
    t = theoretical_cpu(torch.float32, facts, threads=2)
    assert t.flops_per_s == pytest.approx((134.4e9, 268.8e9))
    above = t.checked(314e9)
    assert above.flops_per_s is None and "below the measured 314 GFLOP/s" in above.derivation
    assert "the clock stated (2.10 GHz) is below the one the cores ran at (at least 2.45 GHz)" in above.derivation
    middle = t.checked(200e9)  # rules out 1 FMA unit per core
    assert middle.flops_per_s == pytest.approx((268.8e9, 268.8e9)) and "rules out the low end" in middle.derivation
    assert t.checked(100e9) is t
    assert t.checked(300e9).flops_per_s is None  # a step's rate is checked too


def test_a_bench_file_without_its_clock_is_checked_without_one():
    # a figure and its derivation but no usable 'hz' (hand-edited, or written by another tool): read as any,
    # the figure above the measurement is dropped and the words say why, without a clock to name
    for hz in ({}, {"hz": 0}, {"hz": "fast"}):
        t = Theoretical.from_dict(
            {
                "flops_per_s": [134.4e9, 268.8e9],
                "derivation": "2 cores x ? GHz x 32-64",
                "cores": 2,
                "per_cycle": [32, 64],
                **hz,
            }
        )
        assert t.hz is None
        above = t.checked(314e9)
        assert above.flops_per_s is None and "below the measured 314 GFLOP/s" in above.derivation
        assert "the clock assumed is below the one the cores ran at (at least 2.45 GHz)" in above.derivation


def test_theoretical_bf16_from_the_flags(tmp_path):
    folder = _cpufreq(tmp_path, [3_000_000])
    amx = theoretical_cpu(torch.bfloat16, cpu_facts(XEON_CPUINFO, folder, lscpu="", cpus=2, caches={}), threads=2)
    assert amx.flops_per_s == pytest.approx((2 * 3e9 * AMX_BF16_FLOP_PER_CYCLE,) * 2) and "AMX" in amx.derivation
    assert AMX_BF16_FLOP_PER_CYCLE == 1024  # TDPBF16PS: 16x16x32 multiply-adds = 16,384 FLOP per 16 cycles
    dot = theoretical_cpu(torch.bfloat16, cpu_facts(ZEN4_CPUINFO, folder, lscpu="", cpus=2, caches={}), threads=2)
    fp32 = theoretical_cpu(torch.float32, cpu_facts(ZEN4_CPUINFO, folder, lscpu="", cpus=2, caches={}), threads=2)
    assert dot.flops_per_s == pytest.approx(tuple(2 * x for x in fp32.flops_per_s)) and "AVX512_BF16" in dot.derivation
    plain = cpu_facts("flags\t: fpu avx2 fma\n", folder, lscpu="", cpus=2, caches={})
    assert theoretical_cpu(torch.bfloat16, plain, 2).flops_per_s == theoretical_cpu(torch.float32, plain, 2).flops_per_s
    assert theoretical_cpu(torch.float16, plain, 2).flops_per_s is None


def test_the_memory_floor_uses_the_bandwidth_of_the_steps_working_set(tmp_path):
    for i, (level, kind, size) in enumerate(
        [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"), (3, "Unified", "105 MiB")]
    ):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (
            (d / "level").write_text(f"{level}\n"),
            (d / "type").write_text(f"{kind}\n"),
            (d / "size").write_text(f"{size}\n"),
        )
    caches = cache_sizes(tmp_path)
    assert caches == {"L1d": 48 * 2**10, "L2": 2 * 2**20, "L3": 105 * 2**20}
    sizes = probe_sizes(caches, threads=2)
    assert sizes["L2"] == 2 * 2**20 and sizes["L3"] == 105 * 2**19 and sizes["DRAM"] > sizes["L3"]
    bw = {"L2": 200e9, "L3": 80e9, "DRAM": 14e9}
    assert bandwidth_for(900_000, sizes, bw)[:2] == ("L2", 200e9)  # the MLP: under 1 MB
    assert bandwidth_for(30 * 2**20, sizes, bw)[:2] == ("L3", 80e9)
    level, rate, why = bandwidth_for(2**30, sizes, bw)
    assert (level, rate) == ("DRAM", 14e9) and "beyond" in why
    assert probe_sizes({}, 2) == {"DRAM": sizes["DRAM"]}  # no cache stated: only DRAM, and a floor says so


def test_no_theoretical_ceiling_below_a_measured_one_on_either_machine_kind(tmp_path):
    """The bench's ceiling line on the issue's Xeon (its cpufreq states only the 2.10 GHz base clock) and on the
    Zen 4 (no clock stated; or a 3.70 GHz maximum): on 1 and 2 threads, against the probe's rate and against a
    step that ran faster than the probe, no theoretical figure printed is below what was measured."""
    import re

    from mnistlab.measure.bench import ceilings_line

    machines = {
        "xeon": cpu_facts(
            XEON_CPUINFO, _cpufreq(tmp_path / "xeon", [2_100_000, 2_100_000]), lscpu="", cpus=2, caches={}
        ),
        "zen4, no clock": cpu_facts(ZEN4_CPUINFO, tmp_path / "none", lscpu="", cpus=2, caches={}),
        "zen4": cpu_facts(ZEN4_CPUINFO, _cpufreq(tmp_path / "zen4", [3_700_000]), lscpu="", cpus=2, caches={}),
    }
    printed = []
    for name, facts in machines.items():
        for threads, probe, step in ((1, 236e9, 0.0), (2, 314e9, 0.0), (2, 200e9, 330e9), (1, 103e9, 120e9)):
            t = theoretical_cpu(torch.float32, facts, threads).checked(probe)  # as measure_ceilings does
            ceilings = Ceilings("cpu", "float32", probe, "matmul", 1e10, 1e-6, t, threads=threads).to_dict()
            line = ceilings_line("cpu", name, ceilings, probe, step)
            assert f"GFLOP/s on {threads} thread" in line  # a measured ceiling says its thread count
            figures = re.search(r"theoretical ([\d,]+)(?:–([\d,]+))? GFLOP/s", line)
            if figures:
                printed.append(name)
                assert min(float(g.replace(",", "")) for g in figures.groups() if g) * 1e9 >= max(probe, step), line
            else:
                assert "theoretical: not" in line, line
    assert "zen4" in printed and "zen4, no clock" not in printed  # the Xeon: only where 2.10 GHz covers the rate
    # a bench.json from before the derivation was recorded (no cores, no FLOP per cycle): no figure below
    old = {
        "theoretical": {"flops_per_s": [134.4e9, 268.8e9], "derivation": "2 cores x 2.10 GHz x 32-64"},
        "threads": 2,
        "best_shape": "matmul",
        "bandwidth_bytes_per_s": 1e10,
        "op_cost_s": 1e-6,
    }
    line = ceilings_line("cpu", "xeon", old, 314e9)
    assert "theoretical: not given: 2 cores x 2.10 GHz x 32-64 gives 269 GFLOP/s, below the measured 314" in line
    assert "theoretical 134" in ceilings_line("cpu", "xeon", old, 100e9)

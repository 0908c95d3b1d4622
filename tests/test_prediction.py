"""A GPU's step time predicted from a step counted here (issue 21, part 3), and the table it reads."""

from __future__ import annotations

import math

import pytest

from mnistlab.cli import main
from mnistlab.core.errors import ConfigError
from mnistlab.core.timing import Spread
from mnistlab.measure.ceilings import StepCost
from mnistlab.measure.gpus import DEFAULT_GPU, DISPATCH_COST_S, GPUS, Gpu, gpu, match
from mnistlab.measure.prediction import Prediction

# a GPU with round figures: 100 TFLOP/s float32 (TF32), 1 TB/s
ROUND = Gpu("round", 200e12, 100e12, 10e12, 1e12, "made up for the test", "https://example.org")


def test_the_bound_on_a_step_known_by_hand():
    # 40 operations x 5 us = 0.2 ms; 50 MB at 1 TB/s = 0.05 ms; 1 GFLOP at 100 TFLOP/s = 0.01 ms
    p = Prediction.of(StepCost(flops=1_000_000_000, bytes=50_000_000, ops=40), ROUND)
    assert DISPATCH_COST_S == 5e-6
    assert (p.launch_s, p.bandwidth_s, p.compute_s) == pytest.approx((2e-4, 5e-5, 1e-5))
    assert p.binds == "launch" and p.bound_s == pytest.approx(2e-4)
    assert p.attainable_flops_per_s == pytest.approx(5e12)
    # measured here: 2 ms (1.8-2.4): at most 10x faster (9-12x)
    assert p.speedup(Spread.of([0.0018, 0.0020, 0.0024])) == pytest.approx((10.0, 9.0, 12.0))
    assert "launch-bound" in p.words() and "0.200 ms" in p.words() and "50.00 us (bandwidth floor)" in p.words()
    # the same step with 2 operations and 1 TFLOP is compute-bound; in bf16 it runs at the bf16 peak
    big = StepCost(flops=10**15, bytes=50_000_000, ops=2)
    assert Prediction.of(big, ROUND).binds == "compute" and Prediction.of(big, ROUND).bound_s == pytest.approx(10.0)
    assert Prediction.of(big, ROUND, "bfloat16").bound_s == pytest.approx(5.0)
    assert Prediction.of(StepCost(10, 10**13, 2), ROUND).binds == "bandwidth"


def test_the_gpu_table_is_complete_positive_and_cited():
    assert {"H100 SXM", "H200", "A100 80GB", "L4", "T4", "RTX 4090", "GTX 1660 Ti"} <= set(GPUS) and DEFAULT_GPU in GPUS
    for g in GPUS.values():
        figures = (g.bf16_flops_per_s, g.tf32_flops_per_s, g.fp32_flops_per_s, g.bandwidth_bytes_per_s)
        assert all(math.isfinite(x) and x > 0 for x in figures), g
        assert g.bf16_flops_per_s >= g.tf32_flops_per_s >= g.fp32_flops_per_s, g
        assert "datasheet" in g.source or "whitepaper" in g.source, g
        assert g.url.startswith("https://"), g
    assert gpu("h100 sxm") is GPUS["H100 SXM"] and gpu("RTX4090") is GPUS["RTX 4090"]
    assert match("NVIDIA H100 80GB HBM3") is GPUS["H100 SXM"] and match("NVIDIA L4") is GPUS["L4"]
    assert match("Tesla T4") is GPUS["T4"] and match("NVIDIA L40S") is None and match("") is None
    with pytest.raises(ConfigError, match="unknown GPU 'B9000'.*H100 SXM"):
        gpu("B9000")


def test_an_unknown_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as end:
        main(["report", str(tmp_path), "--gpu", "B9000"])
    err = capsys.readouterr().err
    assert end.value.code == 2 and len(err.splitlines()) == 1 and "unknown GPU 'B9000'" in err


def test_float32_matmuls_at_the_fp32_rate_and_convolutions_at_tf32():
    """PyTorch's defaults: float32 matmuls at "highest" precision (the FP32 rate), cuDNN convolutions may use
    TF32. On an A100 (19.5 / 156 TFLOP/s) 1 TFLOP of matmuls takes at least 51 ms, of convolutions 6.4 ms."""
    a100 = GPUS["A100 80GB"]
    step = StepCost(flops=10**12, bytes=1, ops=1)
    assert Prediction.of(step, a100, conv_flops=0).compute_s == pytest.approx(1 / 19.5)
    assert Prediction.of(step, a100, conv_flops=10**12).compute_s == pytest.approx(1 / 156)
    assert Prediction.of(step, a100).compute_s == pytest.approx(1 / 156)  # not split: the faster rate, a lower bound
    half = Prediction.of(step, a100, conv_flops=5 * 10**11)
    assert half.compute_s == pytest.approx(0.5 / 19.5 + 0.5 / 156) and "FP32 rate" in half.words()
    assert Prediction.of(step, a100, dispatch_cost_s=2e-6).words().count("2 us each") == 1
    mlp = Prediction.of(step, a100, conv_flops=0).words()  # a step without convolutions names none
    assert "19.5 TFLOP/s (float32 matmuls at the FP32 rate)" in mlp and "convolution" not in mlp


def test_the_gtx_1660_ti_row_and_a_published_run_checked():
    from mnistlab.measure.published import PUBLISHED, RunPart, RunPrediction

    g = GPUS["GTX 1660 Ti"]
    assert g.fp32_flops_per_s == pytest.approx(1536 * 2 * 1.77e9, rel=0.01) and g.bandwidth_bytes_per_s == 288e9
    assert g.tf32_flops_per_s == g.fp32_flops_per_s == g.bf16_flops_per_s and "no tensor cores" in g.note
    assert match("NVIDIA GeForce GTX 1660 Ti") is g and gpu("gtx 1660 ti") is g
    run = PUBLISHED["train_mnist_fast"]
    assert GPUS[run.gpu] is g and run.seconds == pytest.approx(0.762) and "99.04%" in run.accuracy
    # 200 steps of 100 operations at 5 us: 0.1 s of launches; 10 test batches bound by their bytes
    parts = (RunPart("step", 200, StepCost(10**9, 10**6, 100, 0)), RunPart("test", 10, StepCost(0, 288 * 10**6, 10, 0)))
    pred = RunPrediction(g, parts)
    assert pred.floor_s("launch") == pytest.approx(0.1 + 10 * 50e-6)
    assert pred.bound_s == pytest.approx(200 * max(500e-6, 1e9 / g.fp32_flops_per_s) + 10 * 1e-3)
    assert pred.holds(0.762) and not pred.holds(pred.bound_s / 2)
    assert RunPrediction(g, parts, 10e-6).bound_s > pred.bound_s  # a dearer operation, a higher bound


def test_the_published_check_that_q6_and_q9_cite():
    """train_mnist_fast's main() counted here and predicted on its GTX 1660 Ti at 2, 5 and 10 us per operation:
    every bound below the published 0.76 s (the model holds), and a dearer operation a higher bound."""
    from mnistlab.measure.published import CHECK_COSTS_S, published_check

    run, preds = published_check()
    assert run.name == "train_mnist_fast" and run.seconds == pytest.approx(0.762)
    assert [p.dispatch_cost_s for p in preds] == list(CHECK_COSTS_S) == [2e-6, 5e-6, 10e-6]
    assert all(p.holds(run.seconds) for p in preds) and preds[0].bound_s <= preds[1].bound_s <= preds[2].bound_s
    assert 0.1 < preds[1].bound_s < 0.3 and preds[1].ops > 30_000  # docs/benchmarks.md: 0.177 s, 33,755 operations
    assert published_check() is published_check()  # counted once per process


@pytest.mark.slow
def test_a_published_run_counted_at_small_batches_is_counted_exactly():
    """The report counts each part at batches 2 and 4 and extrapolates (FLOPs and bytes grow linearly with the
    batch, the operations do not change): the same figures as counting each part at its own batch."""
    from mnistlab.measure.published import RUNS

    for name, count in RUNS.items():
        assert [p.work for p in count(False)] == [p.work for p in count(True)], name

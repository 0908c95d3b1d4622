"""Ceilings measured as ceilings, and a step's bound judged from its own floors (issue 23)."""

from __future__ import annotations

import pytest
import torch

from mnistlab.measure.ceilings import (Ceilings, Floors, StepCost, Theoretical, count_forward, count_step,
                                       measure_ceilings, step_cost)
from mnistlab.measure.profiling import profile_model
from mnistlab.training.models import create_model

CEIL = Ceilings("cpu", "float32", compute_flops_per_s=1e11, best_shape="matmul", bandwidth_bytes_per_s=1e10,
                op_cost_s=1e-5, theoretical=Theoretical(None, "not derived"))


def test_floors_arithmetic_on_a_step_known_by_hand():
    f = Floors.of(StepCost(flops=2_000_000_000, bytes=100_000_000, ops=100), CEIL, measured_s=0.040, spread=0.02)
    assert (f.compute_s, f.memory_s, f.overhead_s) == pytest.approx((0.020, 0.010, 0.001))
    assert f.bound == "compute" and f.closeness == pytest.approx(0.5)
    assert "compute-bound" in f.words() and "50% of the 40.00 ms measured" in f.words()


def test_floors_within_the_spread_are_never_given_a_single_bound():
    # 20 ms of arithmetic, 19 ms of per-operation costs, measured with a 10% spread: either could be first
    f = Floors.of(StepCost(flops=2_000_000_000, bytes=0, ops=1900), CEIL, measured_s=0.05, spread=0.10)
    assert f.bound == "between compute and overhead" and "-bound" not in f.words()
    assert Floors.of(StepCost(2_000_000_000, 0, 1500), CEIL, 0.05, spread=0.01).bound == "compute"


def test_a_step_faster_than_every_probe_raises_the_ceiling():
    raised = CEIL.raised(1.5e11)
    assert raised.compute_flops_per_s == 1.5e11 and raised.raised_to == 1.5e11
    assert CEIL.raised(0.5e11) is CEIL


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

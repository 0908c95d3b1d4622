"""A profiler trace of a few steps: Chrome trace-event JSON holding the step's operators."""

from __future__ import annotations

import json

import pytest
import torch

from mnistlab.core.errors import MnistlabError
from mnistlab.data.datasets import get_dataset
from mnistlab.measure.trace import trace_steps
from mnistlab.training.levers import Levers, make_step
from mnistlab.training.loop import make_optimizer
from mnistlab.training.models import create_model
from tests.conftest import operators

CPU = torch.device("cpu")


def test_a_trace_is_chrome_json_with_the_steps_operators():
    shape = get_dataset("mnist").shape
    model = create_model("mlp", shape)
    step = make_step(model, make_optimizer(model, 0.01, 0.5), Levers(), CPU, batch_size=8, sample_shape=shape.sample)
    x, y = torch.randn(8, *shape.sample), torch.randint(0, 10, (8,))
    data = trace_steps(lambda: step(x, y), CPU, steps=3, warmup=1)
    events = json.loads(data)["traceEvents"]
    assert [e["name"] for e in events if str(e.get("name", "")).startswith("ProfilerStep#")] == [
        "ProfilerStep#1",
        "ProfilerStep#2",
        "ProfilerStep#3",
    ]
    # the MLP's forward (addmm), backward (mm) and the fused SGD update, each recorded
    assert {"aten::addmm", "aten::mm", "aten::_fused_sgd_"} <= operators(data)


@pytest.mark.parametrize("steps", [0, 101])
def test_a_trace_holds_a_bounded_number_of_steps(steps):
    with pytest.raises(MnistlabError, match="a trace holds 1 to 100 steps"):
        trace_steps(lambda: None, CPU, steps=steps)

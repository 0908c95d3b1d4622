import pytest
import torch

from mnistlab.core.errors import ConfigError
from mnistlab.measure.summary import summarize
from mnistlab.training.models import count_parameters, create_model, list_models

EXPECTED_PARAMS = {"mlp": 109_386, "cnn": 101_578}


def test_registry_holds_the_notebook_models():
    assert set(EXPECTED_PARAMS) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_model_forward_backward_and_shape(name):
    model = create_model(name)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", list_models())
def test_parameter_counts(name):
    model = create_model(name)
    assert count_parameters(model) == count_parameters(model, trainable_only=True)
    if name in EXPECTED_PARAMS:
        assert count_parameters(model) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_summary_lists_state_dict_and_output_shape(name):
    s = summarize(name, batch_size=3)
    assert s.output_shape == (3, 10)
    params = dict(create_model(name).named_parameters())  # the state_dict also lists buffers (batch norm's)
    assert sum(n for k, _, n in s.parameters if k in params) == s.total
    text = s.format()
    assert f"{s.total:,}" in text and "output shape for input [3, 1, 28, 28]: [3, 10]" in text


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model 'resnet'; choose one of: mlp, cnn"):
        create_model("resnet")


@pytest.mark.parametrize(
    "size, fits",
    [
        ((28, 28), True),
        ((24, 24), True),
        ((26, 26), True),
        ((30, 30), True),
        ((16, 16), True),
        ((20, 16), True),
        ((64, 48), True),
        ((25, 25), False),
        ((27, 28), False),
        ((28, 23), False),
        ((14, 14), False),
        ((4, 4), False),
    ],
)
def test_speednet_says_which_image_sizes_it_takes(size, fits, recwarn):
    """Pixel unshuffle needs an even side, and two 3x3 convs and a pool need 16 pixels: a dataset of another
    size is one line naming the size and the rule (it was torch's 'input.size(-2)=21 is not divisible by 2'
    for a 25x25 image, the cropped size, and a UserWarning about zero-element tensors for 14x14)."""
    from mnistlab.data.datasets import DataShape

    shape = DataShape((1, *size), 10)
    if fits:
        assert create_model("speednet", shape)(torch.zeros(3, *shape.sample)).shape == (3, 10)
        return
    with pytest.raises(ConfigError) as e:
        create_model("speednet", shape)
    message = str(e.value)
    assert f"{size[0]}x{size[1]}" in message and "even" in message and "at least 16" in message
    assert "speednet(num_classes=10" in message and "None(" not in message and "\n" not in message
    assert not [w for w in recwarn if "zero-element" in str(w.message)]

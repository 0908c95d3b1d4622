import pytest
import torch

from mnistlab.measure.profiling import MACS_VS_FLOPS, format_profile, profile_model
from mnistlab.training.models import create_model, list_models


def test_mlp_reference_values_at_batch_1():
    p = profile_model("mlp")
    assert (p.parameters, p.macs, p.forward_flops, p.train_step_flops) == (109_386, 109_184, 218_368, 454_400)
    assert p.thop_number == p.macs
    assert [(lp.name, lp.macs) for lp in p.layers] == [("fc1", 100_352), ("fc2", 8_192), ("fc3", 640)]
    assert [lp.output_shape for lp in p.layers] == [[1, 128], [1, 64], [1, 10]]


def test_cnn_parameters_and_output_shapes():
    p = profile_model("cnn")
    assert p.parameters == 101_578
    shapes = {lp.name: lp.output_shape for lp in p.layers}
    assert (
        shapes["net.0"] == [1, 32, 28, 28] and shapes["net.4"] == [1, 128, 7, 7] and shapes["net.6"] == [1, 128, 1, 1]
    )
    # the first layer computes no input gradient: its step is 2x forward, the others 3x
    first = p.layers[0]
    assert first.train_flops == 2 * first.flops and p.layers[2].train_flops == 3 * p.layers[2].flops


@pytest.mark.parametrize("name", list_models())
def test_counts_scale_with_batch_and_layers_sum_to_total(name):
    p1, p8 = profile_model(name, 1), profile_model(name, 8)
    assert p8.forward_flops == 8 * p1.forward_flops and p8.train_step_flops == 8 * p1.train_step_flops
    assert sum(lp.flops for lp in p1.layers) == p1.forward_flops
    assert sum(lp.train_flops for lp in p1.layers) == p1.train_step_flops
    assert p1.forward_flops == 2 * p1.macs and p1.backward_flops > p1.forward_flops
    assert sum(lp.parameters for lp in p1.layers) == p1.parameters


def _without_batch_norm() -> list[str]:
    # thop also counts batch norm's elementwise work as MACs; FlopCounterMode counts matmuls and convs only
    return [
        m
        for m in list_models()
        if not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) for mod in create_model(m).modules())
    ]


@pytest.mark.parametrize("name", _without_batch_norm())
def test_macs_agree_with_thop(name):
    thop = pytest.importorskip("thop")
    model = create_model(name)
    total, params, layers = thop.profile(model, inputs=(torch.randn(1, 1, 28, 28),), verbose=False, ret_layer_info=True)
    p = profile_model(name)
    assert int(total) == p.macs == p.thop_number and int(params) == p.parameters

    def flatten(info, prefix=""):
        for k, (ops, _, children) in info.items():
            path = f"{prefix}{k}"
            if children:
                yield from flatten(children, path + ".")
            else:
                yield path, int(ops)

    assert dict(flatten(layers)) == {lp.name: lp.macs for lp in p.layers}


def test_format_says_macs_are_not_flops():
    text = format_profile(profile_model("mlp"))
    assert "109,184" in text and "thop prints as 'FLOPs'" in text and "454,400" in text
    assert "thop, fvcore and ptflops" in MACS_VS_FLOPS


def test_batch_norm_models_count_at_batch_1():
    """The speedrun's net has batch norm after a dense layer; training mode would refuse batch 1."""
    p = profile_model("speednet", batch_size=1)
    assert p.parameters == 82_090
    assert p.macs == 57_600 + 41_472 + 73_728 + 2_560  # conv 4->16 at 10x10, conv 16->32 at 3x3, dense, head
    assert profile_model("speednet", batch_size=4).macs == 4 * p.macs


def test_a_model_that_fails_at_the_counted_batch_is_one_line(tmp_path):
    """The construction check runs one batch size; a user's model may fail only at the one counted."""
    from mnistlab.core.errors import ConfigError

    f = tmp_path / "odd.py"
    f.write_text(
        "import torch\nfrom torch import nn\nclass Odd(nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.l = nn.Linear(784, 10)\n"
        "    def forward(self, x):\n        if x.shape[0] == 3: raise RuntimeError('no batch of 3')\n"
        "        return self.l(x.flatten(1))\n"
    )
    assert profile_model(f"{f}:Odd", batch_size=2).macs == 2 * 7840
    with pytest.raises(ConfigError, match=r"\(3, 1, 28, 28\) batch failed \(RuntimeError: no batch of 3\)"):
        profile_model(f"{f}:Odd", batch_size=3)

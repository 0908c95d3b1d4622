"""Issue 14 (GPU readiness), the parts whose logic runs on the CPU: deterministic mode, the CNN's
pool, device failures, the warm-up, precision records, fused SGD on resume, sync-free evaluation.
The CUDA-only checks are in test_gpu.py."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from mnistlab import cli
from mnistlab.core import device as dev
from mnistlab.core.environment import precision_environment
from mnistlab.core.errors import ConfigError, DeviceError
from mnistlab.core.rundir import open_run
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.jobs.train import train_run
from mnistlab.measure.epochs import epoch_timing
from mnistlab.training import levers, loop, runner
from mnistlab.training.checkpoint import load_checkpoint
from mnistlab.training.config import TrainConfig
from mnistlab.training.evaluation import evaluate
from mnistlab.training.models import CNN, count_parameters, create_model


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "tiny", "epochs": 2, "seed": 0, "device": "cpu", **kw})


def quiet(**kw):
    return dict(log=lambda m: None, progress=False, **kw)


# 1. deterministic mode ------------------------------------------------------------------------------


def test_deterministic_sets_the_cublas_workspace_before_any_device_work(
    tiny, tmp_path, monkeypatch, restore_determinism
):
    seen = []

    def resolve(name):  # the first device work of a run
        seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
        return dev.resolve_device(name)

    monkeypatch.setattr(runner, "resolve_device", resolve)
    train_run(cfg(epochs=1, deterministic=True), run_dir=tmp_path / "r", **quiet())
    assert seen == [":4096:8"]
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark


def test_deterministic_keeps_a_valid_workspace_setting_and_refuses_a_bad_one(monkeypatch, restore_determinism):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    dev.enable_deterministic()
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    torch.use_deterministic_algorithms(False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")
    with pytest.raises(ConfigError, match="CUBLAS_WORKSPACE_CONFIG"):
        dev.enable_deterministic()
    assert not torch.are_deterministic_algorithms_enabled()


def _old_cnn() -> nn.Module:
    """The CNN as it was before issue 14: AdaptiveMaxPool2d(1) as the pool."""
    model = CNN()
    model.net[6] = nn.AdaptiveMaxPool2d(1)
    return model


def test_cnn_pool_is_the_adaptive_pool_in_parameters_outputs_and_gradients():
    torch.manual_seed(0)
    old = _old_cnn()
    new = create_model("cnn")
    assert list(new.state_dict()) == list(old.state_dict()) and count_parameters(new) == 101_578
    new.load_state_dict(old.state_dict())  # a checkpoint written before the change loads, strictly
    x = torch.randn(16, 1, 28, 28)
    x[:8] = -1.0  # blank images: the last ReLU's planes are constant, so every maximum is tied
    out_old, out_new = old(x), new(x)
    assert torch.equal(out_old, out_new)
    out_old.square().sum().backward()
    out_new.square().sum().backward()
    for (name, a), b in zip(old.named_parameters(), new.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad), name  # ties: the gradient goes where the old pool sent it


# 2. device failures -------------------------------------------------------------------------------

OOM = (
    "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
    "1.25 GiB is free. Including non-PyTorch memory, this process has 77.9 GiB memory in use."
)
NO_KERNEL = (
    "CUDA error: no kernel image is available for execution on the device\n"
    "CUDA kernel errors might be asynchronously reported at some other API call"
)


@pytest.mark.parametrize(
    "error, words",
    [
        (
            RuntimeError(OOM),
            [
                "out of memory on cuda at batch size 64",
                "Tried to allocate 20.00 GiB",
                "1.25 GiB is free",
                "--batch-size 32",
            ],
        ),
        (torch.cuda.OutOfMemoryError("CUDA out of memory."), ["out of memory on cuda", "--batch-size 32"]),
        (RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)"), ["out of memory on cuda"]),
        (RuntimeError(NO_KERNEL), ["no kernel image", "compute capability", "--device cpu"]),
        (RuntimeError("CUDA error: an illegal memory access was encountered\nmore"), ["device error on cuda"]),
        (RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"), ["device error on cuda"]),
    ],
)
def test_device_failures_are_one_line(error, words):
    message = dev.device_error_message(error, torch.device("cuda"), 64)
    assert message is not None and "\n" not in message
    for w in words:
        assert w in message
    assert "Including non-PyTorch" not in message  # the allocator's advice stays out of the one line


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (64x784 and 10x10)"),
        RuntimeError("Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!"),
        ValueError("CUDA error: not a RuntimeError"),
    ],
)
def test_bugs_are_not_device_failures(error):
    assert dev.device_error_message(error, torch.device("cuda"), 64) is None


def test_out_of_memory_at_batch_size_one_suggests_no_smaller_batch():
    message = dev.device_error_message(RuntimeError(OOM), torch.device("cuda"), 1)
    assert "--batch-size" not in message and "--device cpu" in message


def _failing_model(
    monkeypatch, error: Exception, *, training_call: int | None = None, eval_call: int | None = None
) -> None:
    """Runs get the real model, which raises `error` at its n-th forward in train (or eval) mode."""
    real = runner.create_model
    calls = {True: 0, False: 0}

    def create(*args, **kwargs):
        model = real(*args, **kwargs)

        def hook(module, args):
            calls[module.training] += 1
            n = training_call if module.training else eval_call
            if n is not None and calls[module.training] == n:
                raise error

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(runner, "create_model", create)


def test_out_of_memory_in_training_fails_the_run_and_keeps_its_checkpoints(tiny, tmp_path, monkeypatch):
    _failing_model(monkeypatch, RuntimeError(OOM), training_call=8 + 3)  # epoch 2, step 3 (8 steps an epoch)
    with pytest.raises(DeviceError) as info:
        train_run(cfg(epochs=3), run_dir=tmp_path / "r", **quiet())
    message = str(info.value)
    assert "\n" not in message and "at batch size 64" in message and "--batch-size 32" in message
    assert "during training" in message and "checkpoints kept" in message
    run = open_run(tmp_path / "r")
    status = run.status()
    assert status["state"] == "failed" and "out of memory" in status["message"] and status["epochs_done"] == 1
    assert load_checkpoint(run.path / "last.pt")["epoch"] == 1 and (run.path / "best.pt").exists()
    assert len(run.metrics()) == 1
    monkeypatch.setattr(runner, "create_model", create_model)  # the device is fine again: resume
    train_run(resume=run.path, **quiet())
    assert run.status()["state"] == "completed" and len(run.metrics()) == 3


def test_out_of_memory_in_validation_names_no_training_batch(tiny, tmp_path, monkeypatch):
    _failing_model(monkeypatch, torch.cuda.OutOfMemoryError(OOM), eval_call=1)
    with pytest.raises(DeviceError, match="during validation") as info:
        train_run(cfg(), run_dir=tmp_path / "r", **quiet())
    assert "--batch-size" not in str(info.value) and "no checkpoint written" in str(info.value)
    assert open_run(tmp_path / "r").status()["state"] == "failed"


def test_a_bug_fails_the_run_and_keeps_its_traceback(tiny, tmp_path, monkeypatch):
    _failing_model(monkeypatch, RuntimeError("mat1 and mat2 shapes cannot be multiplied"), training_call=2)
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train_run(cfg(), run_dir=tmp_path / "r", **quiet())
    status = open_run(tmp_path / "r").status()
    assert status["state"] == "failed" and "shapes cannot be multiplied" in status["message"]


def test_cli_device_failures_are_one_line_and_exit_2(tiny, tmp_path, monkeypatch, capsys):
    _failing_model(monkeypatch, RuntimeError(NO_KERNEL), training_call=9)
    argv = [
        "train",
        "--dataset",
        "tiny",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mnistlab: error: cpu: CUDA error: no kernel image")
    # eval's failure reaches the CLI's last net
    from mnistlab.training import evaluation

    def broken(*a, **k):
        raise RuntimeError("CUDA error: unspecified launch failure")

    monkeypatch.setattr(evaluation, "evaluate", broken)
    assert cli.main(["eval", str(tmp_path / "r"), "--device", "cpu"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert errors == ["mnistlab: error: device error: CUDA error: unspecified launch failure"]


# 4. warm-up ---------------------------------------------------------------------------------------


def _loader(n: int, batch: int, shuffle: bool = True) -> DeviceLoader:
    g = torch.Generator().manual_seed(n)
    split = RawSplit(
        torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,), generator=g)
    )
    return DeviceLoader(split, 0.1, 0.3, batch, "cpu", shuffle=shuffle, seed=0)


def test_warm_up_changes_no_weight_buffer_gradient_mode_or_rng():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.Dropout(0.5), nn.Linear(32, 10))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    train, val = _loader(100, 32), _loader(50, 1000, shuffle=False)
    step = levers.make_step(
        model,
        loop.make_optimizer(model, 0.01, 0.5),
        levers.Levers(),
        torch.device("cpu"),
        batch_size=32,
        sample_shape=(1, 28, 28),
    )
    seconds = levers.warm_up(step, train.x[:32], train.y[:32], evaluation=val.x)
    assert seconds > 0 and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # running stats too
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew numbers, and they were given back


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.slow
def test_a_warmed_up_run_is_bit_identical_and_reports_the_warm_up(tiny, tmp_path, monkeypatch, model, pinned_threads):
    short = cfg(model=model, max_steps=4)
    plain = train_run(short, run_dir=tmp_path / "plain", **quiet())
    calls, logs = [], []
    real_warm_up, real_epoch = runner.warm_up, runner.train_epoch
    monkeypatch.setattr(runner, "WARMUP_DEVICES", ("cpu",))  # the accelerator path, on the CPU
    monkeypatch.setattr(runner, "warm_up", lambda *a, **k: calls.append("warm-up") or real_warm_up(*a, **k))
    monkeypatch.setattr(runner, "train_epoch", lambda *a, **k: calls.append("epoch") or real_epoch(*a, **k))
    warm = train_run(short, run_dir=tmp_path / "warm", log=logs.append, progress=False)
    assert calls == ["warm-up", "epoch", "epoch"]  # once, before epoch 1's timer starts
    assert [r["train_loss"] for r in warm.metrics()] == [r["train_loss"] for r in plain.metrics()]
    assert [r["val_loss"] for r in warm.metrics()] == [r["val_loss"] for r in plain.metrics()]
    a, b = load_checkpoint(plain.path / "last.pt"), load_checkpoint(warm.path / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng_cpu"], b["rng_cpu"])
    assert warm.env()["warmup_seconds"] > 0 and "warmup_seconds" not in plain.env()
    # the session's first row carries its measured warm-up, so 'cold' is claimed only here
    first, second = warm.metrics()
    assert first["warmup_s"] == warm.env()["warmup_seconds"] and "warmup_s" not in second
    assert "cold start" in epoch_timing(warm.metrics()).words()
    assert "cold" not in epoch_timing(plain.metrics()).words()
    assert all(r["cpu_count"] >= 1 and r["load_1m"] >= 0 for r in plain.metrics())  # each epoch's load
    assert any(line.startswith("warm-up on cpu:") and "not counted in epoch 1" in line for line in logs)


# 6. precision -------------------------------------------------------------------------------------


@pytest.fixture
def restore_precision():
    matmul, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    new_api = getattr(torch.backends.cuda.matmul, "fp32_precision", None)
    yield
    torch.set_float32_matmul_precision(matmul)
    torch.backends.cudnn.allow_tf32 = conv
    if new_api is not None:
        torch.backends.cuda.matmul.fp32_precision = new_api


@pytest.mark.parametrize(
    "setting, capability, matmul",
    [("highest", (9, 0), "FP32"), ("high", (9, 0), "TF32"), ("medium", (8, 0), "TF32"), ("high", (7, 0), "FP32")],
)
def test_cuda_precision_labels(monkeypatch, restore_precision, setting, capability, matmul):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: capability)
    torch.set_float32_matmul_precision(setting)
    cuda = torch.device("cuda")
    assert dev.matmul_precision_label(cuda) == matmul
    torch.backends.cudnn.allow_tf32 = True  # torch's default: the CNN's convolutions run in TF32
    assert dev.conv_precision_label(cuda) == ("TF32" if capability >= (8, 0) else "FP32")
    torch.backends.cudnn.allow_tf32 = False
    assert dev.conv_precision_label(cuda) == "FP32"


def test_precision_is_read_when_the_new_and_legacy_apis_are_mixed(restore_precision):
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("torch before the fp32_precision API")
    matmul.fp32_precision = "tf32"
    with pytest.raises(RuntimeError):
        bool(matmul.allow_tf32)  # torch refuses the legacy read once the two are mixed
    assert dev.cuda_matmul_tf32() is True
    assert precision_environment()["cuda_matmul_allow_tf32"] is True


def test_cpu_precision_label(restore_precision):
    cpu = torch.device("cpu")
    assert dev.matmul_precision_label(cpu) == "FP32"
    torch.set_float32_matmul_precision("medium")  # oneDNN may then use bfloat16
    assert dev.matmul_precision_label(cpu) in ("BF16", "FP32")


def test_env_json_records_precision(tiny, tmp_path):
    env = train_run(cfg(epochs=1), run_dir=tmp_path / "r", **quiet()).env()
    for key in (
        "float32_matmul_precision",
        "cuda_matmul_allow_tf32",
        "cudnn_allow_tf32",
        "cudnn_benchmark",
        "cuda_version",
        "cudnn_version",
        "deterministic_algorithms",
    ):
        assert key in env, key
    assert env["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert env["matmul_precision"] == dev.matmul_precision_label(torch.device("cpu"))


# 7. fused SGD on resume ---------------------------------------------------------------------------


def test_fused_is_set_for_the_device_after_loading():
    model = nn.Linear(4, 2)
    saved = loop.make_optimizer(model, 0.1, 0.5).state_dict()
    saved["param_groups"][0]["fused"] = None  # as an MPS run saves it
    opt = loop.make_optimizer(model, 0.1, 0.5)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["fused"] is None  # what torch restores: the saving device's flag
    loop.set_fused_for(opt, torch.device("cpu"))
    assert opt.param_groups[0]["fused"] is True
    loop.set_fused_for(opt, torch.device("mps"))  # a CUDA run resumed on MPS
    assert opt.param_groups[0]["fused"] is None


def test_resume_uses_fused_sgd_on_this_device(tiny, tmp_path):
    run = train_run(cfg(epochs=1), run_dir=tmp_path / "r", **quiet())
    state = torch.load(run.path / "last.pt", weights_only=True)
    state["optimizer"]["param_groups"][0]["fused"] = None  # the checkpoint of an MPS run
    torch.save(state, run.path / "last.pt")
    train_run(resume=run.path, overrides={"epochs": 1}, **quiet())
    assert load_checkpoint(run.path / "last.pt")["optimizer"]["param_groups"][0]["fused"] is True


# 8. evaluation without data-dependent shapes --------------------------------------------------------


def test_evaluation_counts_into_a_fixed_size_matrix(monkeypatch):
    torch.manual_seed(0)
    model, data = create_model("mlp"), _loader(250, 64, shuffle=False)  # 4 batches, the last partial
    with torch.no_grad():
        pred = model(data.x).argmax(1)
    expected = torch.bincount(data.y * 10 + pred, minlength=100).view(10, 10)

    def refuse(*a, **k):
        raise AssertionError("bincount's output size depends on the data: a GPU sync per batch")

    monkeypatch.setattr(torch, "bincount", refuse)
    result = evaluate(model, data, 10)
    assert result.confusion == expected.tolist() and result.total == 250
    assert result.correct == int(expected.diagonal().sum())

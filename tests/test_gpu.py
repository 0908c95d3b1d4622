"""GPU code paths: run where CUDA exists, skipped cleanly elsewhere. scripts/gpu_check.sh runs them
on a lent GPU machine. The CPU-testable logic of the same features is in test_gpu_readiness.py."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch

from mnistlab import cli
from mnistlab.core.device import count_cuda_syncs
from mnistlab.core.errors import DeviceError
from mnistlab.core.rundir import open_run
from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.jobs.train import train_run
from mnistlab.training import levers, loop, runner
from mnistlab.training.checkpoint import load_checkpoint
from mnistlab.training.config import TrainConfig
from mnistlab.training.evaluation import evaluate
from mnistlab.training.models import create_model
from tests.conftest import make_images
from tests.faults.conftest import make_tiny_env

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]

CUDA = torch.device("cuda")


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"dataset": "tiny", "epochs": 2, "seed": 0, "device": "cuda", **kw})


def quiet(**kw):
    return dict(log=lambda m: None, progress=False, **kw)


def losses(run) -> list[tuple[float, float, float]]:
    return [(r["train_loss"], r["val_loss"], r["val_accuracy"]) for r in run.metrics()]


def same_weights(a, b) -> bool:
    wa, wb = load_checkpoint(a.path / "last.pt")["model"], load_checkpoint(b.path / "last.pt")["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_loader_keeps_data_on_the_gpu():
    split = RawSplit(torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (100,)))
    loader = DeviceLoader(split, 0.1, 0.3, 32, "cuda", shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda
    cpu = DeviceLoader(split, 0.1, 0.3, 32, "cpu", shuffle=True, seed=0)
    assert torch.equal(loader.order(3).cpu(), cpu.order(3))  # same batches on every device


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_train_and_resume_on_cuda(tiny, tmp_path, model):
    run = train_run(cfg(model=model), run_dir=tmp_path / "r", **quiet())
    env = run.env()
    assert env["device"].startswith("cuda") and run.test()["total"] == 200
    assert env["warmup_seconds"] > 0  # the one-time costs, reported apart from epoch 1
    assert env["cudnn_version"] and env["cuda_version"] == torch.version.cuda
    tf32 = torch.cuda.get_device_capability() >= (8, 0)
    assert env["conv_precision"] == ("TF32" if tf32 and env["cudnn_allow_tf32"] else "FP32")
    assert env["matmul_precision"] == ("TF32" if tf32 and env["cuda_matmul_allow_tf32"] else "FP32")
    train_run(resume=run.path, overrides={"epochs": 1}, **quiet())
    assert len(run.metrics()) == 3


# 1. --deterministic, in fresh processes: CUBLAS_WORKSPACE_CONFIG unset, as a user starts
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_deterministic_runs_repeat_exactly(tmp_path, model):
    t = make_tiny_env(tmp_path)
    env = {k: v for k, v in t["env"].items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    runs = []
    for name in ("a", "b"):
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "mnistlab",
                "train",
                "--dataset",
                "tiny",
                "--model",
                model,
                "--epochs",
                "2",
                "--device",
                "cuda",
                "--deterministic",
                "--no-progress",
                "--run-dir",
                str(tmp_path / name),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
        runs.append(open_run(tmp_path / name))
    assert runs[0].env()["deterministic_algorithms"] is True
    assert losses(runs[0]) == losses(runs[1]) and same_weights(*runs)


# 9. resume on CUDA equals an uninterrupted CUDA run (deterministic kernels, so exactly)
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_resume_on_cuda_equals_one_go(tiny, tmp_path, model, restore_determinism):
    whole = train_run(cfg(model=model, epochs=3, deterministic=True), run_dir=tmp_path / "whole", **quiet())
    half = train_run(cfg(model=model, epochs=1, deterministic=True), run_dir=tmp_path / "half", **quiet())
    train_run(resume=half.path, overrides={"epochs": 2}, **quiet())
    assert losses(half) == losses(whole) and same_weights(half, whole)


# 7 and 9. resume across devices: the run goes on, with fused SGD set for the new device
@pytest.mark.parametrize("first, then", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_across_devices(tiny, tmp_path, first, then):
    whole = train_run(cfg(epochs=2, device=first), run_dir=tmp_path / "whole", **quiet())
    run = train_run(cfg(epochs=1, device=first), run_dir=tmp_path / "r", **quiet())
    train_run(resume=run.path, overrides={"epochs": 1, "device": then}, **quiet())
    assert run.status()["state"] == "completed" and run.env()["device"].startswith(then)
    assert load_checkpoint(run.path / "last.pt")["optimizer"]["param_groups"][0]["fused"] is True
    (a_train, a_val, _), (b_train, b_val, _) = losses(whole)[1], losses(run)[1]
    assert b_train == pytest.approx(a_train, rel=1e-3) and b_val == pytest.approx(a_val, rel=1e-3)


def test_eval_on_the_cpu_of_a_cuda_run_without_cuda(tiny, tmp_path):
    run = train_run(cfg(epochs=1), run_dir=tmp_path / "r", **quiet())
    env = {**make_tiny_env(tmp_path)["env"], "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        [sys.executable, "-m", "mnistlab", "eval", str(run.path), "--device", "cpu", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    on_cpu, on_cuda = json.loads(p.stdout), run.test()
    assert on_cpu["total"] == on_cuda["total"] == 200
    assert abs(on_cpu["correct"] - on_cuda["correct"]) <= 1 and on_cpu["loss"] == pytest.approx(
        on_cuda["loss"], abs=1e-4
    )


# 8. syncs: the training epoch syncs at its start, its logged steps and its end; evaluation once
def _cuda_loader(n: int, batch: int, shuffle: bool = True) -> DeviceLoader:
    images, labels = make_images(n, 3)
    return DeviceLoader(
        RawSplit(torch.from_numpy(images), torch.from_numpy(labels).long()), 0.2, 0.3, batch, CUDA, shuffle=shuffle
    )


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_training_and_evaluation_sync_only_where_the_code_says(model_name):
    torch.manual_seed(0)
    model = create_model(model_name).to(CUDA)
    opt = loop.make_optimizer(model, 0.01, 0.5)
    data = _cuda_loader(640, 16)
    levers.warm_up(
        levers.make_step(model, opt, levers.Levers(), CUDA, batch_size=16, sample_shape=(1, 28, 28)),
        data.x[:16],
        data.y[:16],
    )

    def epoch(steps: int, log_every: int):
        return lambda: loop.train_epoch(model, opt, data, epoch=1, global_step=0, log_every=log_every, max_steps=steps)

    few, many = count_cuda_syncs(epoch(10, 1000)), count_cuda_syncs(epoch(40, 1000))
    assert few == many <= 6, (few, many)  # none per step
    assert count_cuda_syncs(epoch(40, 10)) == many + 3  # one per logged step: 4 logged instead of 1
    small, large = (
        count_cuda_syncs(lambda: evaluate(model, _cuda_loader(100, 50, False))),
        count_cuda_syncs(lambda: evaluate(model, _cuda_loader(640, 50, False))),
    )
    assert small == large <= 4, (small, large)  # none per batch


# CPU vs GPU numerics: the same seed, batches and a few hundred steps
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_cpu_and_cuda_train_alike(model_name):
    conv_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # FP32 against FP32: TF32 would add its own ~1e-3 rounding
    try:
        torch.manual_seed(0)
        cpu_model = create_model(model_name)
        gpu_model = copy.deepcopy(cpu_model).to(CUDA)
        images, labels = make_images(640, 4)
        split = RawSplit(torch.from_numpy(images), torch.from_numpy(labels).long())
        curves = []
        for model, device in ((cpu_model, torch.device("cpu")), (gpu_model, CUDA)):
            data = DeviceLoader(split, 0.2, 0.3, 32, device, shuffle=True, seed=0)
            opt = loop.make_optimizer(model, 0.01, 0.5)
            curve = []
            for e in range(1, 16):  # 15 epochs of 20 steps: 300 steps
                curve += [
                    v for _, v in loop.train_epoch(model, opt, data, epoch=e, global_step=0, log_every=5).step_log
                ]
            curves.append(curve)
    finally:
        torch.backends.cudnn.allow_tf32 = conv_tf32
    assert len(curves[0]) == 60
    torch.testing.assert_close(torch.tensor(curves[1]), torch.tensor(curves[0]), rtol=2e-2, atol=2e-3)
    for a, b in zip(cpu_model.parameters(), gpu_model.parameters(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=2e-2, atol=2e-3)


# 2. a real CUDA out-of-memory error: one line, run failed, checkpoints kept
def test_out_of_memory_is_one_line_and_keeps_the_checkpoints(tiny, tmp_path, monkeypatch):
    real = runner.create_model
    calls = {"n": 0}

    def create(name):
        model = real(name)

        def hook(module, args):
            if module.training:
                calls["n"] += 1
                if calls["n"] == 8 + 1 + 2:  # the warm-up's forward, 8 steps of epoch 1, then step 2
                    torch.empty(2**40, dtype=torch.uint8, device=CUDA)  # 1 TiB

        model.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(runner, "create_model", create)
    with pytest.raises(DeviceError) as info:
        train_run(cfg(epochs=3), run_dir=tmp_path / "r", **quiet())
    torch.cuda.empty_cache()
    message = str(info.value)
    assert "\n" not in message and "out of memory on cuda at batch size 64" in message and "--batch-size 32" in message
    status = open_run(tmp_path / "r").status()
    assert status["state"] == "failed" and status["epochs_done"] == 1
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1


# the bench's CUDA path (CUDA events per phase), through the CLI
def test_cuda_bench_path(tiny, tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        cli.main(
            [
                "bench",
                "--devices",
                "cpu",
                "cuda",
                "--models",
                "mlp",
                "cnn",
                "--pipelines",
                "resident",
                "--steps",
                "20",
                "--repeats",
                "2",
                "--warmup",
                "3",
                "--dataset",
                "tiny",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    bench = json.loads((out / "bench.json").read_text())
    cells = [c for c in bench["cells"] if c["device"] == "cuda"]
    assert len(cells) == 2 and bench["peaks_flops_per_s"]["cuda"] > bench["peaks_flops_per_s"]["cpu"]
    for c in cells:
        assert all(v > 0 for v in c["phases_s"].values()) and min(c["step_s"]) > 0, c

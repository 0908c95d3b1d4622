"""GPU code paths: run where CUDA exists, skipped cleanly elsewhere."""

import pytest
import torch

from mnistlab.training import runner
from mnistlab.training.config import TrainConfig
from mnistlab.data.loader import DeviceLoader, RawSplit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")]


def test_loader_keeps_data_on_the_gpu():
    split = RawSplit(torch.randint(0, 256, (100, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (100,)))
    loader = DeviceLoader(split, 0.1, 0.3, 32, "cuda", shuffle=True, seed=0)
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda
    cpu = DeviceLoader(split, 0.1, 0.3, 32, "cpu", shuffle=True, seed=0)
    assert torch.equal(loader.order(3).cpu(), cpu.order(3))  # same batches on every device


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_train_and_resume_on_cuda(tiny, tmp_path, model):
    cfg = TrainConfig(model=model, dataset="tiny", epochs=2, device="cuda")
    run = runner.train(cfg, run_dir=tmp_path / "r", log=lambda m: None, progress=False)
    assert run.env()["device"].startswith("cuda") and run.test()["total"] == 200
    runner.train(resume=run.path, overrides={"epochs": 1}, log=lambda m: None, progress=False)
    assert len(run.metrics()) == 3

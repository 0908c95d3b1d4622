"""The GPU prediction checked against published times: the train_mnist_fast runs on a GTX 1660 Ti (issue 27).

    python benchmarks/gpu_prediction_check.py [--costs-us 2 3 5 7 10]

Counts, here on the CPU, every part of each published run as its notebook wrote it (building the model, the
first training step, which creates the optimizer's state, the steady steps, the short last step, the test
batches), then predicts the run's time on the GPU it was published on with the model that answers Q6/Q9
(measure/prediction.Prediction.of: per part the largest of operations x the dispatch cost, bytes at the
memory's bandwidth, FLOPs at the rate PyTorch uses by default), summed over the parts; measure/published.py
has the runs and their sources. The dispatch cost per eager operation is an assumption (5 us), so the table
shows the bound across --costs-us. A published time below the predicted lower bound would prove the model
wrong. Exit code 1 if it does.

What cannot be counted as it was: the runs used PyTorch 1.8; this counts torch's own for-loop Adam and Adadelta
(foreach=False, as 1.8's were), which dispatch about as many operations per parameter as 1.8's, and zero_grad
setting gradients to zero (1.8's default) rather than to None.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.measure.published import PUBLISHED, RunPart, RunPrediction, count_call, published_gpu, sweep
from mnistlab.measure.table import text_table

TRAIN, BATCH = 60_000, 256


class FinalNet(nn.Module):
    """8_Final_00s76.ipynb's Net: conv 5x5 24, pool, ReLU, conv 3x3 32, pool, ReLU, dense 800-256-10, log-softmax
    (benchmarks/speedrun_ladder.py's AnchorNet, with its pooling before the ReLU, as the notebook has it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 24, 5, 1), nn.Conv2d(24, 32, 3, 1)
        self.fc1, self.fc2 = nn.Linear(800, 256), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        return F.log_softmax(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))), dim=1)


class Step7Net(nn.Module):
    """7_Smaller_NN2_01s74.ipynb's Net: conv 3x3 24, ReLU, pool, conv 3x3 32, ReLU, pool, dense 800-128-10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 24, 3, 1), nn.Conv2d(24, 32, 3, 1)
        self.fc1, self.fc2 = nn.Linear(800, 128), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.log_softmax(self.fc2(F.relu(self.fc1(torch.flatten(x, 1)))), dim=1)


def count_run(net: type[nn.Module], optimizer, epochs: int, test_batch: int) -> list[RunPart]:
    """The parts of one published main(): model built and copied to the GPU, per epoch the first step (the
    optimizer creates its state), the steady steps, the short last step and a test pass."""
    torch.manual_seed(0)
    steps = -(-TRAIN // BATCH)
    last = TRAIN - (steps - 1) * BATCH
    built = count_call(net)
    model = net()
    params = list(model.parameters())
    copy = sum(2 * p.nbytes for p in params)  # .to(device): each parameter read on the host, written on the GPU
    opt = optimizer(params)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"], total_steps=steps * epochs,
                                                cycle_momentum=False)
    data, labels = torch.randn(2 * BATCH, 1, 28, 28), torch.randint(0, 10, (2 * BATCH,))

    def step(i: int, size: int) -> None:  # the notebook's loop body, its slicing included
        x, y = data[i * size:(i + 1) * size], labels[i * size:(i + 1) * size]
        opt.zero_grad(set_to_none=False)
        F.nll_loss(model(x), y).backward()
        opt.step()
        sched.step()

    first, steady, short = count_call(lambda: step(0, BATCH)), count_call(lambda: step(1, BATCH)), \
        count_call(lambda: step(0, last))
    test_x, test_y = torch.randn(test_batch, 1, 28, 28), torch.randint(0, 10, (test_batch,))

    def test_batch_pass() -> None:
        model.eval()
        with torch.no_grad():
            x, y = test_x[0:test_batch], test_y[0:test_batch]
            out = model(x)
            F.nll_loss(out, y, reduction="sum").item()
            pred = out.argmax(dim=1, keepdim=True)
            pred.eq(y.view_as(pred)).sum().item()
        model.train()

    tested = count_call(test_batch_pass)
    return [RunPart("model built on the host, copied to the GPU", 1,
                    type(built)(built.flops, built.conv_flops, built.bytes + copy, built.ops + len(params))),
            RunPart("first training step of an epoch (optimizer state created)", 1 if epochs == 1 else epochs, first),
            RunPart(f"training step at batch {BATCH}", (steps - 2) * epochs, steady),
            RunPart(f"last training step (batch {last})", epochs, short),
            RunPart(f"test batch of {test_batch}", (10_000 // test_batch) * epochs, tested)]


RUNS = {"train_mnist_fast": lambda: count_run(FinalNet, lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.7, 0.9),
                                                                                 foreach=False), 1, 2000),
        "train_mnist_fast step 7": lambda: count_run(Step7Net, lambda p: torch.optim.Adadelta(p, lr=4.0, foreach=False),
                                                     2, 1000)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--costs-us", nargs="+", type=float, default=[2, 3, 5, 7, 10])
    args = p.parse_args(argv)
    costs = sorted(c * 1e-6 for c in args.costs_us)
    wrong = False
    for name, parts_of in RUNS.items():
        run = PUBLISHED[name]
        gpu = published_gpu(run)
        parts = parts_of()
        at5 = RunPrediction(gpu, tuple(parts))
        print(f"{name}: {run.source}; published {run.seconds:.2f} s ({run.spread}); {run.accuracy}")
        print(f"  timed: {run.timed}")
        print(f"  GPU row: {gpu.name}: fp32 {gpu.fp32_flops_per_s / 1e12:.2f} TFLOP/s (TF32: "
              f"{'none' if gpu.tf32_flops_per_s <= gpu.fp32_flops_per_s else f'{gpu.tf32_flops_per_s / 1e12:.1f}'}), "
              f"{gpu.bandwidth_bytes_per_s / 1e9:.0f} GB/s ({gpu.source}); {gpu.note}")
        rows = []
        for part in parts:
            pr = at5.prediction(part)
            rows.append([part.what, f"{part.times}", f"{part.work.ops}", f"{part.work.flops / 1e6:,.1f}",
                         f"{part.work.conv_flops / 1e6:,.1f}", f"{part.work.bytes / 1e6:,.2f}",
                         f"{pr.launch_s * 1e6:,.1f}", f"{pr.bandwidth_s * 1e6:,.1f}", f"{pr.compute_s * 1e6:,.1f}",
                         pr.binds, f"{part.times * pr.bound_s * 1e3:,.1f}"])
        print(text_table(["part (counted once here, on the CPU)", "times", "ops", "MFLOP", "of which conv", "MB",
                          "launch us", "bandwidth us", "compute us", "binds", "x times: ms"], rows))
        rows = []
        for pred in sweep(gpu, parts, costs):
            rows.append([f"{pred.dispatch_cost_s * 1e6:g}", f"{pred.floor_s('launch'):.3f}",
                         f"{pred.floor_s('bandwidth'):.3f}", f"{pred.floor_s('compute'):.3f}",
                         f"{pred.bound_s:.3f}", pred.binds, f"{pred.no_overlap_s:.3f}", f"{run.seconds:.3f}",
                         f"{run.seconds / pred.bound_s:.2f}x", "holds" if pred.holds(run.seconds) else "WRONG"])
            wrong |= not pred.holds(run.seconds)
        print(text_table(["us per op", "launch s", "bandwidth s", "compute s", "lower bound s", "binds",
                          "no overlap s", "published s", "published / bound", "model"], rows))
        print(f"  {at5.ops:,} operations in the run: the published {run.seconds:.2f} s is "
              f"{run.seconds / at5.ops * 1e6:.1f} us per operation if it were all dispatch and launch")
        print()
    print("lower bound: per part the largest of its floors (launch: operations x us per op; bandwidth: bytes at the "
          "GPU's bandwidth; compute: convolution FLOPs at the fp32/TF32 rate cuDNN may use, the rest at the FP32 "
          "rate of float32 matmuls), times the part's count, summed; no overlap: every floor added (not a bound)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

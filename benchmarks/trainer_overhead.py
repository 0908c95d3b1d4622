"""How much does mnistlab's trainer add to the bare work of an epoch?

Times, in one process and interleaved, one MLP epoch through `mnistlab.training.loop.train_epoch`
(device-resident loader, progress bar, step log) and the bare loop (forward, backward,
step on batches sliced beforehand), and prints the ratio; the floor is 1.15. Then times
part of an epoch of the notebook's own pipeline (PIL per sample + DataLoader) on the same
machine, for comparison.

    python benchmarks/trainer_overhead.py [--repeats 5] [--reference-steps 150] [--dataset mnist]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from mnistlab.core.environment import cpu_name
from mnistlab.data.datasets import data_root, get_dataset
from mnistlab.data.fetching import fetch
from mnistlab.data.loader import make_splits, read_split, split_train_val
from mnistlab.data.notebook_pipeline import reference_loader
from mnistlab.training.config import TrainConfig
from mnistlab.training.loop import make_optimizer, train_epoch
from mnistlab.training.models import create_model

FLOOR = 1.15


def fresh(cfg: TrainConfig):
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model)
    return model, make_optimizer(model, cfg.lr, cfg.momentum)


def bare_epoch(cfg, batches) -> float:
    model, opt = fresh(cfg)
    t0 = time.perf_counter()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def trainer_epoch(cfg, loader, epoch) -> float:
    model, opt = fresh(cfg)
    t0 = time.perf_counter()
    with tqdm(total=loader.num_samples, unit="sample", unit_scale=True, leave=False, desc="trainer") as bar:
        train_epoch(model, opt, loader, epoch=epoch, global_step=0, progress=bar)
    return time.perf_counter() - t0


def reference_epoch_estimate(cfg, split, spec, steps: int) -> tuple[float, str]:
    model, opt = fresh(cfg)
    loader = reference_loader(split, spec.mean, spec.std, cfg.batch_size, cfg.seed)
    it = iter(loader)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    per_step = (time.perf_counter() - t0) / steps
    return per_step * len(loader), loader.dataset.implementation


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--reference-steps", type=int, default=150, help="0 skips the notebook pipeline")
    ap.add_argument("--subset", type=int, default=None, help="first N samples only (smoke tests)")
    args = ap.parse_args(argv)

    cfg = TrainConfig(dataset=args.dataset, device="cpu", subset=args.subset)
    spec, root = get_dataset(cfg.dataset), data_root()
    fetch(spec, root, log=lambda m: print(m, file=sys.stderr))
    splits = make_splits(
        spec,
        root,
        batch_size=cfg.batch_size,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        device="cpu",
        subset=cfg.subset,
    )
    loader = splits.train
    bare, mine = [], []
    trainer_epoch(cfg, loader, 1)  # warm-up: allocator, thread pool, first-call costs
    for r in range(args.repeats):
        epoch = r + 1
        batches = list(loader.batches(epoch))  # pre-sliced, outside the clock
        bare.append(bare_epoch(cfg, batches))
        mine.append(trainer_epoch(cfg, loader, epoch))
    ratio = statistics.median(mine) / statistics.median(bare)
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"MLP epoch on the CPU: {loader.num_samples:,} samples, batch {cfg.batch_size}, {len(loader)} steps; "
        f"{args.repeats} repeats each, interleaved"
    )
    print(f"  bare loop (pre-sliced tensors)  min {min(bare):.3f} s  median {statistics.median(bare):.3f} s")
    print(f"  mnistlab trainer                min {min(mine):.3f} s  median {statistics.median(mine):.3f} s")
    verdict = "PASS" if ratio <= FLOOR else "FAIL"
    print(f"  ratio trainer / bare (medians): {ratio:.3f}   floor <= {FLOOR}   {verdict}")
    if args.reference_steps > 0:
        train_raw, _ = split_train_val(read_split(spec, root, train=True), cfg.val_fraction, cfg.seed)
        if cfg.subset:
            train_raw = train_raw.__class__(train_raw.images[: cfg.subset], train_raw.labels[: cfg.subset])
        est, impl = reference_epoch_estimate(cfg, train_raw, spec, min(args.reference_steps, len(loader)))
        print(
            f"  notebook pipeline ({impl}): {est:.2f} s per epoch "
            f"(timed {min(args.reference_steps, len(loader))} steps, extrapolated to {len(loader)})"
        )
        print(
            f"  mnistlab trainer vs notebook pipeline: {est / statistics.median(mine):.1f}x faster "
            f"(the notebook reported ~15 s per MLP epoch on a 2-core machine)"
        )
    return 0 if ratio <= FLOOR else 1


if __name__ == "__main__":
    raise SystemExit(main())

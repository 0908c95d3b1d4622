"""Device-resident data: each split is one tensor on the target device.

Pixels are converted and normalised once (ToTensor + Normalize, as the notebook does
per sample); an epoch is a fresh random permutation sliced into batches. No per-sample
Python, no DataLoader, no workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mnistlab.core.defaults import EVAL_BATCH_SIZE
from mnistlab.core.errors import DataError
from mnistlab.data.datasets import DatasetSpec
from mnistlab.data.idx import read_idx
from mnistlab.data.verify import check_file


@dataclass(frozen=True)
class RawSplit:
    """uint8 images (N, H, W) and int64 labels (N,), on the CPU."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def read_split(spec: DatasetSpec, root: Path, train: bool, verify: bool = True) -> RawSplit:
    """Read one official split after checking its files against their pins."""
    img_spec, lbl_spec = (spec.train_images, spec.train_labels) if train else (spec.test_images, spec.test_labels)
    raw = spec.raw_dir(root)
    if verify:
        check_file(raw / img_spec.name, img_spec)
        check_file(raw / lbl_spec.name, lbl_spec)
    images = read_idx(raw / img_spec.name)
    labels = read_idx(raw / lbl_spec.name)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{raw}: expected images (N, H, W) and labels (N,), got {images.shape} and {labels.shape}")
    if tuple(images.shape[1:]) != spec.image_size:
        raise DataError(
            f"{raw / img_spec.name}: images of {images.shape[1]}x{images.shape[2]}, but the dataset "
            f"{spec.name} is {spec.image_size[0]}x{spec.image_size[1]}"
        )
    if len(images) != len(labels):
        raise DataError(f"{raw / img_spec.name}: {len(images)} images but {len(labels)} labels in {lbl_spec.name}")
    n_classes = len(spec.classes)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{raw / lbl_spec.name}: label {int(labels.max())} out of range 0..{n_classes - 1}")
    return RawSplit(
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)), torch.from_numpy(labels.astype(np.int64))
    )


def split_train_val(train: RawSplit, val_fraction: float, seed: int) -> tuple[RawSplit, RawSplit]:
    """Seeded random split of the official training set (48k/12k for 0.2)."""
    n = len(train)
    n_val = int(round(n * val_fraction))
    if not 0 < n_val < n:
        raise DataError(f"val fraction {val_fraction} leaves an empty split of {n} samples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, va = perm[: n - n_val], perm[n - n_val :]
    return RawSplit(train.images[tr], train.labels[tr]), RawSplit(train.images[va], train.labels[va])


class DeviceLoader:
    """Serves (x, y) batches of one split from tensors held on `device`.

    x is float32 (B, 1, H, W), normalised; y is int64 (B,). The order of each epoch
    comes from a CPU generator seeded with (seed, epoch), so a resumed run sees the
    same batches as an uninterrupted one, on any device.

    `shard=(rank, size)`: in a data-parallel job each process takes every size-th sample of each
    batch (batch_size stays the global batch). Training (`drop_short`) skips a last batch with fewer
    samples than processes on all of them alike, since every process must step; evaluation keeps it,
    so that every sample counts exactly once: a process whose part of it is empty skips it (its sums
    are added over the job at the end, with no collective per batch).
    """

    def __init__(
        self,
        split: RawSplit,
        mean: float,
        std: float,
        batch_size: int,
        device: torch.device | str,
        shuffle: bool,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
        drop_short: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        device = torch.device(device)
        # (N, 1, H, W) in one conversion: ToTensor's /255 then Normalize (then `dtype`: the speedrun keeps
        # its inputs in the dtype its first layer computes in, which autocast would cast them to each step)
        x = split.images.to(device).unsqueeze(1).float().div_(255.0).sub_(mean).div_(std).to(dtype)
        self.x, self.y = x, split.labels.to(device)
        self.batch_size, self.shuffle, self.seed, self.device = batch_size, shuffle, seed, device
        self.rank, self.world_size = shard
        self.drop_short = drop_short

    def __len__(self) -> int:  # this process's batches per epoch, the last partial one kept if it has a part of it
        full, rest = divmod(len(self.y), self.batch_size)
        if self.drop_short:
            return full + (rest >= self.world_size)
        return full * (self.batch_size > self.rank) + (rest > self.rank)

    @property
    def num_samples(self) -> int:
        return len(self.y)

    def order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.y), device=self.device)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.y), generator=g).to(self.device)

    def batches(
        self, epoch: int = 0, out: tuple[torch.Tensor, torch.Tensor] | None = None, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`out`: buffers that full batches are gathered into, in place (a CUDA graph's static inputs);
        they are overwritten by the next batch, and a short last batch comes in fresh tensors.
        `skip`: start after that many batches of the epoch (a resume from a mid-epoch checkpoint)."""
        idx = self.order(epoch)
        for start in range(skip * self.batch_size, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            if self.world_size > 1:
                if len(b) < self.world_size and self.drop_short:
                    break
                b = b[self.rank :: self.world_size]
                if not len(b):  # a batch shorter than the job had no sample for this process
                    continue
            # index_select: about half the cost of advanced indexing for these small gathers
            if out is not None and len(b) == len(out[1]):
                yield torch.index_select(self.x, 0, b, out=out[0]), torch.index_select(self.y, 0, b, out=out[1])
            else:
                yield torch.index_select(self.x, 0, b), torch.index_select(self.y, 0, b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)


@dataclass
class Splits:
    train: DeviceLoader
    val: DeviceLoader
    test: DeviceLoader


def make_splits(
    spec: DatasetSpec,
    root: Path,
    *,
    batch_size: int,
    val_fraction: float,
    seed: int,
    device: torch.device | str,
    subset: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> Splits:
    """Read, split and move to `device` the train/val/test loaders of a dataset.

    `subset` keeps only the first N samples of each split (quick runs and tests); `shard` splits every
    batch of all three over the processes of a data-parallel job (see DeviceLoader): validation and test
    count every sample exactly once.
    """
    train_val = read_split(spec, root, train=True)
    test = read_split(spec, root, train=False)
    train, val = split_train_val(train_val, val_fraction, seed)
    if subset:
        train, val, test = (RawSplit(s.images[:subset], s.labels[:subset]) for s in (train, val, test))
    held_out = partial(DeviceLoader, batch_size=EVAL_BATCH_SIZE, shuffle=False, shard=shard, drop_short=False)
    return Splits(
        train=DeviceLoader(train, spec.mean, spec.std, batch_size, device, shuffle=True, seed=seed, shard=shard),
        val=held_out(val, spec.mean, spec.std, device=device),
        test=held_out(test, spec.mean, spec.std, device=device),
    )


def make_test_loader(
    spec: DatasetSpec,
    root: Path,
    device: torch.device | str,
    subset: int | None = None,
) -> DeviceLoader:
    """The test split; `subset` keeps its first N samples, as make_splits does for a --subset run."""
    test = read_split(spec, root, train=False)
    if subset:
        test = RawSplit(test.images[:subset], test.labels[:subset])
    return DeviceLoader(test, spec.mean, spec.std, EVAL_BATCH_SIZE, device, shuffle=False)

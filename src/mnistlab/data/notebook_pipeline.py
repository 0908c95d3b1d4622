"""The notebook's own input pipeline, kept as a baseline to measure against.

A per-sample Dataset returns Normalize(ToTensor(PIL image)) and a DataLoader(batch_size=64,
shuffle=True) collates them; the training loop moves each batch to the device. With
torchvision importable, its transforms are used; otherwise an equivalent built on
Pillow (the same steps: PIL image, uint8 -> float/255, then normalise), labelled so.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mnistlab.core.defaults import DEFAULT_BATCH_SIZE
from mnistlab.data.loader import RawSplit


def _torchvision_transform(mean: float, std: float) -> Callable[[Image.Image], torch.Tensor] | None:
    try:
        from torchvision import transforms
    except Exception:  # absent, or broken beside this torch build
        return None
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])


class PILSampleDataset(Dataset):
    """torchvision.datasets.MNIST's __getitem__: one sample at a time, through a PIL image."""

    def __init__(self, split: RawSplit, mean: float, std: float) -> None:
        self.images, self.labels = split.images, split.labels
        self.mean, self.std = mean, std
        self.transform = _torchvision_transform(mean, std)
        self.implementation = "torchvision transforms" if self.transform else "Pillow equivalent (no torchvision)"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i].numpy())  # 2-D uint8 -> mode "L"
        if self.transform is not None:
            return self.transform(img), int(self.labels[i])
        # the steps torchvision takes. ToTensor: copy out of the image, HxWxC -> CxHxW, /255
        x = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(img.size[1], img.size[0], 1)
        x = x.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        # Normalize (not in place): per-channel mean and std as tensors, on a copy
        mean = torch.as_tensor([self.mean], dtype=x.dtype).view(-1, 1, 1)
        std = torch.as_tensor([self.std], dtype=x.dtype).view(-1, 1, 1)
        if (std == 0).any():  # torchvision's guard, kept for its cost
            raise ValueError("std evaluated to zero")
        return x.clone().sub_(mean).div_(std), int(self.labels[i])


def reference_loader(
    split: RawSplit, mean: float, std: float, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0
) -> DataLoader:
    ds = PILSampleDataset(split, mean, std)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))

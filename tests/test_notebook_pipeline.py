"""The notebook's baseline pipeline and the device-resident loader serve the same tensors for the same samples,
so that timing one against the other compares speed, not different work."""

from __future__ import annotations

import torch

from mnistlab.data.loader import DeviceLoader, RawSplit
from mnistlab.data.notebook_pipeline import PILSampleDataset, reference_loader
from tests.conftest import make_images

MEAN, STD = 0.1307, 0.3081


def split(n: int = 96) -> RawSplit:
    images, labels = make_images(n, seed=3)
    return RawSplit(torch.from_numpy(images), torch.from_numpy(labels.astype("int64")))


def test_same_normalised_tensor_for_every_sample():
    s = split()
    ds = PILSampleDataset(s, MEAN, STD)
    resident = DeviceLoader(s, MEAN, STD, batch_size=len(s), device="cpu", shuffle=False)
    for i in range(len(s)):
        x, y = ds[i]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        torch.testing.assert_close(x, resident.x[i], rtol=0, atol=1e-6)
        assert y == int(resident.y[i])


def test_same_batches_as_a_whole_when_collated():
    s = split()
    xs, ys = zip(*reference_loader(s, MEAN, STD, batch_size=32, seed=0), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    resident = DeviceLoader(s, MEAN, STD, batch_size=len(s), device="cpu", shuffle=False)
    # the DataLoader shuffles: compare the two as multisets of (label, row sum) pairs
    pairs = lambda xx, yy: sorted(zip(yy.tolist(), xx.flatten(1).sum(1).tolist(), strict=True))  # noqa: E731
    got, want = pairs(x, y), pairs(resident.x, resident.y)
    assert [g[0] for g in got] == [w[0] for w in want]
    torch.testing.assert_close(torch.tensor([g[1] for g in got]), torch.tensor([w[1] for w in want]), rtol=0, atol=1e-3)

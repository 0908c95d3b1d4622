import numpy as np
import pytest
import torch
from conftest import TINY_TEST, TINY_TRAIN, write_tiny_dataset

from mnistlab.core.errors import DataError
from mnistlab.data.idx import encode_idx
from mnistlab.data.loader import DeviceLoader, RawSplit, make_splits, read_split, split_train_val


def _split(n=10):
    return RawSplit(
        torch.arange(n * 784, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 28, 28), torch.arange(n) % 10
    )


def test_normalises_once_like_totensor_then_normalize():
    s = _split(3)
    loader = DeviceLoader(s, 0.1307, 0.3081, 2, "cpu", shuffle=False)
    x, y = next(iter(loader))
    assert x.shape == (2, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (s.images[:2].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x[:, 0], expected)


def test_last_partial_batch_is_kept_and_every_sample_served_once():
    loader = DeviceLoader(_split(10), 0.0, 1.0, 4, "cpu", shuffle=True, seed=3)
    sizes = [len(y) for _, y in loader.batches(1)]
    assert sizes == [4, 4, 2] and len(loader) == 3
    seen = torch.cat([y for _, y in loader.batches(1)])
    assert sorted(seen.tolist()) == sorted(_split(10).labels.tolist())


def test_order_is_a_function_of_seed_and_epoch():
    a = DeviceLoader(_split(50), 0.0, 1.0, 8, "cpu", shuffle=True, seed=1)
    b = DeviceLoader(_split(50), 0.0, 1.0, 8, "cpu", shuffle=True, seed=1)
    assert torch.equal(a.order(2), b.order(2))
    assert not torch.equal(a.order(1), a.order(2))
    assert torch.equal(DeviceLoader(_split(5), 0, 1, 2, "cpu", shuffle=False).order(7), torch.arange(5))


def test_split_is_seeded_and_disjoint():
    s = RawSplit(torch.zeros(100, 28, 28, dtype=torch.uint8), torch.arange(100))
    tr, va = split_train_val(s, 0.2, seed=0)
    assert (len(tr), len(va)) == (80, 20)
    assert set(tr.labels.tolist()).isdisjoint(va.labels.tolist())
    tr2, _ = split_train_val(s, 0.2, seed=0)
    assert torch.equal(tr.labels, tr2.labels)
    assert not torch.equal(tr.labels, split_train_val(s, 0.2, seed=1)[0].labels)


def test_make_splits_on_tiny_data(tiny):
    spec, root = tiny
    splits = make_splits(spec, root, batch_size=64, val_fraction=0.2, seed=0, device="cpu")
    assert splits.train.num_samples == TINY_TRAIN * 4 // 5
    assert splits.val.num_samples == TINY_TRAIN // 5
    assert splits.test.num_samples == TINY_TEST


def _rewrite(root, spec, name, arr):
    (spec.raw_dir(root) / name).write_bytes(encode_idx(arr))


def test_count_mismatch_and_label_range_are_data_errors(tmp_path):
    spec = write_tiny_dataset(tmp_path)
    _rewrite(tmp_path, spec, spec.test_labels.name, np.zeros(TINY_TEST - 1, np.uint8))
    with pytest.raises(DataError, match="images but"):
        read_split(spec, tmp_path, train=False, verify=False)
    _rewrite(tmp_path, spec, spec.test_labels.name, np.full(TINY_TEST, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 out of range 0..9"):
        read_split(spec, tmp_path, train=False, verify=False)
    with pytest.raises(DataError, match="SHA-256"):  # and with verification it never gets that far
        read_split(spec, tmp_path, train=False)


@pytest.mark.parametrize("n, batch", [(1001, 1000), (1002, 1000), (7, 4), (5, 2), (2, 5)])
@pytest.mark.parametrize("size", [2, 3, 4])
def test_evaluation_shards_serve_every_sample_exactly_once(n, batch, size):
    # labels are the sample indices: the shards' union must be every index, each once
    split = RawSplit(torch.zeros(n, 28, 28, dtype=torch.uint8), torch.arange(n))
    shards = [
        DeviceLoader(split, 0.0, 1.0, batch, "cpu", shuffle=False, shard=(r, size), drop_short=False)
        for r in range(size)
    ]
    served = [[y for _, y in s.batches()] for s in shards]
    assert sorted(torch.cat([y for ys in served for y in ys]).tolist()) == list(range(n))
    assert [len(s) for s in shards] == [len(ys) for ys in served] and all(len(y) for ys in served for y in ys)


def test_training_shards_skip_a_last_batch_too_short_for_every_process():
    split = RawSplit(torch.zeros(9, 28, 28, dtype=torch.uint8), torch.arange(9))
    shards = [DeviceLoader(split, 0.0, 1.0, 4, "cpu", shuffle=True, shard=(r, 2)) for r in range(2)]
    assert [[len(y) for _, y in s.batches(0)] for s in shards] == [[2, 2], [2, 2]] and len(shards[1]) == 2

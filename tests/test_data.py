"""Unit tests for pwfl.data: mnist-5k, torchvision IDX loading and client partitions."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pwfl import data as data_module
from pwfl.config import DataConfig
from pwfl.data import (
    DataError,
    client_data,
    client_size,
    dataset_info,
    load_dataset,
    partition_indices,
    server_test_data,
)

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
NUM_TRAIN = 4000  # mnist-5k with test_fraction 0.2


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset(DataConfig(name="mnist-5k", test_fraction=0.2), 0)


# ---------------------------------------------------------------- mnist-5k


def test_mnist5k_shapes_and_dtypes(mnist5k):
    train, test = mnist5k
    assert len(train) == 4000
    assert len(test) == 1000
    assert tuple(train.x.shape) == (4000, 1, 28, 28)
    assert tuple(test.x.shape) == (1000, 1, 28, 28)
    assert train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64
    assert tuple(train.y.shape) == (4000,)


def test_mnist5k_test_split_is_stratified(mnist5k):
    train, test = mnist5k
    # 500 images per digit; 20 % of each digit goes to the test set.
    assert sorted(torch.unique(test.y).tolist()) == list(range(10))
    assert torch.bincount(test.y, minlength=10).tolist() == [100] * 10
    assert torch.bincount(train.y, minlength=10).tolist() == [400] * 10


def test_mnist5k_is_normalised(mnist5k):
    train, _ = mnist5k
    # Pixel 0 maps to -mean/std, pixel 255 to (1 - mean)/std.
    assert float(train.x.min()) == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-5)
    assert float(train.x.max()) == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, abs=1e-5)
    assert abs(float(train.x.mean())) < 0.1
    assert 0.9 < float(train.x.std()) < 1.1


def test_mnist5k_train_and_test_are_disjoint(mnist5k):
    train, test = mnist5k
    train_rows = {bytes(row.numpy().tobytes()) for row in train.x}
    test_rows = {bytes(row.numpy().tobytes()) for row in test.x}
    assert not train_rows & test_rows


def test_mnist5k_test_split_depends_on_seed(mnist5k):
    _, test0 = mnist5k
    _, test1 = load_dataset(DataConfig(name="mnist-5k", test_fraction=0.2), 1)
    assert torch.bincount(test1.y, minlength=10).tolist() == [100] * 10
    assert not torch.equal(test0.x, test1.x)
    # Same seed, same split (bypassing the cache).
    _, again = load_dataset.__wrapped__(DataConfig(name="mnist-5k", test_fraction=0.2), 0)
    assert torch.equal(again.x, test0.x)


def test_server_test_data_is_the_test_split_less_the_validation_set(mnist5k):
    cfg = DataConfig(name="mnist-5k", test_fraction=0.2)
    test, validation = server_test_data(cfg, 0), data_module.server_validation_data(cfg, 0)
    assert len(test) + len(validation) == len(mnist5k[1])


def test_dataset_info():
    assert dataset_info("mnist-5k").input_shape == (1, 28, 28)
    assert dataset_info("mnist").images
    assert dataset_info("cifar10").input_shape == (3, 32, 32)
    assert dataset_info("fashion-mnist").num_classes == 10
    assert dataset_info("synthetic").input_shape == (60,)
    assert not dataset_info("synthetic").images
    with pytest.raises(DataError, match="unknown data set 'svhn'"):
        dataset_info("svhn")


# ---------------------------------------------------------------- partitions


PARTITIONERS = ("iid", "dirichlet", "pathological", "size-skewed")


@pytest.mark.parametrize("partitioner", PARTITIONERS)
def test_partitions_are_disjoint(partitioner, mnist5k):
    cfg = DataConfig(partitioner=partitioner, num_clients=10)
    parts = partition_indices(cfg, 0)
    assert len(parts) == 10
    flat = np.concatenate(parts)
    assert len(flat) == len(np.unique(flat)), "a train index is in two partitions"
    assert flat.min() >= 0 and flat.max() < NUM_TRAIN
    for part in parts:
        assert part.dtype == np.int64
        assert len(part) > 0


@pytest.mark.parametrize("partitioner", ["iid", "dirichlet", "size-skewed"])
def test_partitions_cover_train_set(partitioner, mnist5k):
    parts = partition_indices(DataConfig(partitioner=partitioner, num_clients=10), 0)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(NUM_TRAIN))


def test_iid_partitions_are_equal_sized(mnist5k):
    parts = partition_indices(DataConfig(partitioner="iid", num_clients=10), 0)
    assert [len(p) for p in parts] == [400] * 10


def test_pathological_limits_labels_per_client(mnist5k):
    train, _ = mnist5k
    for classes in (2, 3):
        cfg = DataConfig(partitioner="pathological", num_clients=10, classes_per_client=classes)
        parts = partition_indices(cfg, 0)
        labels = train.y.numpy()
        for part in parts:
            assert 1 <= len(np.unique(labels[part])) <= classes


def test_size_skewed_sizes_are_unequal(mnist5k):
    parts = partition_indices(DataConfig(partitioner="size-skewed", num_clients=10), 0)
    sizes = [len(p) for p in parts]
    assert max(sizes) >= 5 * min(sizes)
    # Linear shares: client i holds about (i + 1) / 55 of the 4000 examples.
    assert sizes == sorted(sizes)
    assert sizes[0] == pytest.approx(4000 / 55, abs=2)


def test_dirichlet_is_label_skewed(mnist5k):
    train, _ = mnist5k
    parts = partition_indices(DataConfig(partitioner="dirichlet", num_clients=10, alpha=0.1), 0)
    labels = train.y.numpy()
    # With alpha 0.1 some client is dominated by a single label (iid gives ~10 %).
    top_share = max(np.bincount(labels[p], minlength=10).max() / len(p) for p in parts)
    assert top_share > 0.5


@pytest.mark.parametrize("partitioner", PARTITIONERS)
def test_same_seed_gives_same_partitions(partitioner, mnist5k, tmp_path, monkeypatch):
    cfg = DataConfig(partitioner=partitioner, num_clients=10)
    # __wrapped__ bypasses the lru_cache and a fresh PWFL_CACHE bypasses the disk
    # cache, so both calls really recompute the split.
    monkeypatch.setenv("PWFL_CACHE", str(tmp_path / "a"))
    a = partition_indices.__wrapped__(cfg, 0)
    monkeypatch.setenv("PWFL_CACHE", str(tmp_path / "b"))
    b = partition_indices.__wrapped__(cfg, 0)
    assert len(a) == len(b) == 10
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_partitions_are_cached_on_disk(mnist5k, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PWFL_CACHE", str(cache))
    cfg = DataConfig(partitioner="dirichlet", num_clients=10)
    first = partition_indices.__wrapped__(cfg, 0)
    files = list(cache.glob("partitions-*.npz"))
    assert len(files) == 1

    # A second call reads the file instead of splitting again.
    def must_not_run(*args, **kwargs):
        raise AssertionError("partitions were recomputed despite the disk cache")

    monkeypatch.setattr(data_module, "_compute_partitions", must_not_run)
    second = partition_indices.__wrapped__(cfg, 0)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
        assert y.dtype == np.int64

    # A damaged cache entry is rebuilt.
    monkeypatch.undo()
    monkeypatch.setenv("PWFL_CACHE", str(cache))
    files[0].write_bytes(b"not an npz file")
    third = partition_indices.__wrapped__(cfg, 0)
    for x, y in zip(first, third, strict=True):
        np.testing.assert_array_equal(x, y)
    with np.load(files[0]) as saved:
        np.testing.assert_array_equal(saved["p0"], first[0])


def test_disk_cache_distinguishes_configs(mnist5k, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PWFL_CACHE", str(cache))
    iid = partition_indices.__wrapped__(DataConfig(partitioner="iid", num_clients=10), 0)
    skew = partition_indices.__wrapped__(DataConfig(partitioner="size-skewed", num_clients=10), 0)
    five = partition_indices.__wrapped__(DataConfig(partitioner="iid", num_clients=5), 0)
    assert len(list(cache.glob("partitions-*.npz"))) == 3
    assert [len(p) for p in iid] == [400] * 10
    assert [len(p) for p in five] == [800] * 5
    assert len(skew[0]) < len(skew[-1])


def test_different_seed_gives_different_iid_partitions(mnist5k):
    cfg = DataConfig(partitioner="iid", num_clients=10)
    a = partition_indices(cfg, 0)
    b = partition_indices(cfg, 1)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    np.testing.assert_array_equal(np.sort(np.concatenate(b)), np.arange(NUM_TRAIN))


def test_client_data_selects_the_partition(mnist5k):
    cfg = DataConfig(partitioner="iid", num_clients=10, client_holdout=0)  # all of it
    train, _ = mnist5k
    part = partition_indices(cfg, 0)[3]
    data = client_data(cfg, 0, 3)
    assert len(data) == 400 == client_size(cfg, 0, 3)
    assert torch.equal(data.x, train.x[torch.from_numpy(part)])
    assert torch.equal(data.y, train.y[torch.from_numpy(part)])


@pytest.mark.parametrize("client", [-1, 10])
def test_client_data_rejects_a_client_outside_the_population(client):
    with pytest.raises(DataError, match=f"client {client} is outside 0..9"):
        client_data(DataConfig(num_clients=10), 0, client)
    with pytest.raises(DataError, match=f"client {client} is outside 0..9"):
        client_size(DataConfig(num_clients=10), 0, client)


# ---------------------------------------------------------------- torchvision IDX files


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def _write_mnist(root: Path, folder: str, n_train: int = 20, n_test: int = 10):
    """Write a tiny MNIST-format data set under root/<folder>/raw; return its arrays."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8)
    train_x[0] = 0
    train_x[1] = 255
    train_y = np.arange(n_train) % 10
    test_y = (np.arange(n_test) * 3) % 10
    _write_idx_images(raw / "train-images-idx3-ubyte", train_x)
    _write_idx_labels(raw / "train-labels-idx1-ubyte", train_y)
    _write_idx_images(raw / "t10k-images-idx3-ubyte", test_x)
    _write_idx_labels(raw / "t10k-labels-idx1-ubyte", test_y)
    return train_x, train_y, test_x, test_y


def test_torchvision_mnist_from_idx_files(tmp_path):
    root = tmp_path / "mnist-root"
    train_x, train_y, test_x, test_y = _write_mnist(root, "MNIST")
    train, test = load_dataset(DataConfig(name="mnist", root=str(root)), seed=0)

    assert tuple(train.x.shape) == (20, 1, 28, 28)
    assert tuple(test.x.shape) == (10, 1, 28, 28)
    assert train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64
    assert train.y.tolist() == train_y.tolist()
    assert test.y.tolist() == test_y.tolist()

    expected = (torch.from_numpy(test_x).float()[:, None] / 255.0 - MNIST_MEAN) / MNIST_STD
    torch.testing.assert_close(test.x, expected, rtol=1e-5, atol=1e-5)
    assert float(train.x[0].max()) == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-5)
    assert float(train.x[1].min()) == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, abs=1e-5)


def test_torchvision_mnist_partitions(tmp_path):
    root = tmp_path / "mnist-parts"
    _write_mnist(root, "MNIST")
    cfg = DataConfig(name="mnist", root=str(root), num_clients=4, client_holdout=0)
    parts = partition_indices(cfg, 0)
    assert [len(p) for p in parts] == [5, 5, 5, 5]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(20))
    data = client_data(cfg, 0, 2)
    train, _ = load_dataset(cfg, 0)
    assert torch.equal(data.y, train.y[torch.from_numpy(parts[2])])


def test_torchvision_fashion_mnist_uses_its_own_folder_and_stats(tmp_path):
    root = tmp_path / "fashion-root"
    _, _, test_x, test_y = _write_mnist(root, "FashionMNIST", n_train=12, n_test=6)
    train, test = load_dataset(DataConfig(name="fashion-mnist", root=str(root)), seed=0)
    assert len(train) == 12
    assert test.y.tolist() == test_y.tolist()
    expected = (torch.from_numpy(test_x).float()[:, None] / 255.0 - 0.2860) / 0.3530
    torch.testing.assert_close(test.x, expected, rtol=1e-5, atol=1e-5)


def test_missing_torchvision_data_raises_data_error(tmp_path):
    root = tmp_path / "empty-root"
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="mnist", root=str(root), download=False), seed=0)
    message = str(info.value)
    assert "'mnist'" in message
    assert "data.download" in message
    assert str(root) in message
    assert "\n" not in message


def test_missing_cifar_raises_data_error(tmp_path):
    root = tmp_path / "no-cifar"
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(name="cifar10", root=str(root), download=False), seed=0)
    assert "'cifar10'" in str(info.value)
    assert "data.download" in str(info.value)


def test_resample_gives_any_population_examples_of_its_own_without_a_list(mnist5k):
    train, _ = mnist5k
    cfg = DataConfig(
        num_clients=10**9, partitioner="resample", examples_per_client=20, client_holdout=0
    )
    last = client_data(cfg, 0, 10**9 - 1)
    first = client_data(cfg, 0, 0)
    assert len(first) == len(last) == 20 == client_size(cfg, 0, 123_456_789)
    assert not torch.equal(first.y, last.y) or not torch.equal(first.x, last.x)
    # Distinct images of the 4,000-image training split, the same for the same (seed, client).
    hits = [int(torch.nonzero((train.x == img).flatten(1).all(1))[0]) for img in first.x]
    assert len(set(hits)) == 20 and max(hits) < NUM_TRAIN
    data_module.client_split.cache_clear()
    assert torch.equal(client_data(cfg, 0, 0).x, first.x)
    other = DataConfig(
        num_clients=10, partitioner="resample", examples_per_client=20, client_holdout=0
    )
    assert torch.equal(client_data(other, 0, 0).x, first.x)  # a client's draw ignores N
    with pytest.raises(DataError, match="no list of partitions"):
        partition_indices(cfg, seed=0)


def test_resample_more_examples_than_the_data_set_is_one_clear_error(mnist5k):
    cfg = DataConfig(num_clients=2, partitioner="resample", examples_per_client=5000)
    with pytest.raises(DataError, match="examples_per_client"):
        client_data(cfg, seed=0, client=1)


# ---------------------------------------------------------------- each client's held-out share

HOLDOUT_SOURCES = {
    "iid": DataConfig(num_clients=10, partitioner="iid"),
    "dirichlet": DataConfig(num_clients=10, partitioner="dirichlet"),
    "resample": DataConfig(num_clients=10**6, partitioner="resample", examples_per_client=40),
    "synthetic": DataConfig(name="synthetic", num_clients=10**6),
}


def _rows(data) -> list[bytes]:
    return [x.numpy().tobytes() + y.numpy().tobytes() for x, y in zip(data.x, data.y, strict=True)]


@pytest.mark.parametrize("source", list(HOLDOUT_SOURCES))
def test_each_client_holds_out_a_seeded_share_of_its_partition_for_its_own_evaluation(
    source, mnist5k
):
    from dataclasses import replace

    cfg = HOLDOUT_SOURCES[source]
    assert cfg.client_holdout == 0.2
    whole = client_data(replace(cfg, client_holdout=0.0), 0, 3)
    train, held = client_data(cfg, 0, 3), data_module.client_holdout_data(cfg, 0, 3)
    assert len(held) == round(0.2 * len(whole)) > 0
    assert len(train) + len(held) == len(whole) == client_size(replace(cfg, client_holdout=0), 0, 3)
    assert client_size(cfg, 0, 3) == len(train)  # the size the server and the clock see
    # Disjoint shares that cover the partition; the training share keeps its order.
    assert sorted(_rows(train) + _rows(held)) == sorted(_rows(whole))
    assert not set(_rows(train)) & set(_rows(held))
    kept = set(_rows(train))
    assert [r for r in _rows(whole) if r in kept] == _rows(train)
    # Drawn from (seed, client): the same again, another for another seed.
    data_module.client_split.cache_clear()
    assert _rows(data_module.client_holdout_data(cfg, 0, 3)) == _rows(held)
    other_seed = data_module.client_holdout_data(cfg, 1, 3)
    assert _rows(other_seed) != _rows(held)


@pytest.mark.parametrize(
    ("size", "fraction", "held"),
    [
        (0, 0.2, 0),
        (1, 0.2, 0),  # one example: it trains, nothing is left to evaluate on
        (1, 0.9, 0),
        (2, 0.2, 1),  # at least one held out once there are two
        (2, 0.9, 1),  # and at least one kept for training
        (5, 0.2, 1),
        (10, 0.2, 2),
        (1000, 0.2, 200),
        (1000, 0.0, 0),  # 0 turns the client-side split off
    ],
)
def test_held_out_examples_per_partition_size(size, fraction, held):
    assert data_module.holdout_size(size, fraction) == held


def test_a_one_example_client_trains_on_it_and_holds_nothing_out(mnist5k):
    cfg = DataConfig(num_clients=10, partitioner="resample", examples_per_client=1)
    assert len(client_data(cfg, 0, 2)) == 1 == client_size(cfg, 0, 2)
    assert len(data_module.client_holdout_data(cfg, 0, 2)) == 0

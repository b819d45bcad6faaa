"""Hugging Face data sets (``data.name = "hf"``): a hub id or a folder saved with ``save_to_disk``.

Usage::

    [data]
    name = "hf"
    hf_dataset = "flwrlabs/femnist"    # or "/data/femnist" written by Dataset.save_to_disk
    hf_features = "image"              # the column of examples
    hf_label = "character"             # the column of integer (or string) labels
    partitioner = "natural"            # one client per value of partition_by
    partition_by = "writer_id"         # FEMNIST's writers (Caldas et al., LEAF, 2018)

A hub id is read through flwr-datasets' ``FederatedDataset`` (which calls
``datasets.load_dataset``, so it needs a network or the local Hugging Face cache).
The split between clients is cut by the same flwr-datasets partitioners as the
built-in sets, on a table of indices (:func:`pwfl.data.partition_indices`), so
partitions are cached and found from a client's id alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pwfl.bundled import stratified_holdout
from pwfl.errors import DataError


@dataclass(frozen=True)
class HubArrays:
    """A Hugging Face data set as arrays: train and test, and the training rows' ids."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    ids_train: np.ndarray | None
    """The ``partition_by`` column of the training rows (None when it is absent)."""


@lru_cache(maxsize=2)
def hub_arrays(
    source: str,
    features: str,
    label: str,
    test_split: str,
    partition_by: str,
    test_fraction: float,
    seed: int,
) -> HubArrays:
    """Load ``source``'s train split (and ``test_split``, or a stratified
    ``test_fraction`` of train when it has none) as float32 examples and int64 labels.

    Raises
    ------
    DataError
        One line: the set does not load, or it lacks a named column.
    """
    if not source:
        raise DataError(
            "data.name = 'hf' needs data.hf_dataset: a hub id or a folder saved with "
            "Dataset.save_to_disk"
        )
    train, test = _splits(source, test_split)
    for split, name in ((train, "train"), (test, test_split)):
        for column in (features, label):
            if split is not None and column not in split.column_names:
                raise DataError(
                    f"data.hf_dataset = {source!r}: its {name} split has no column "
                    f"{column!r} (it has {', '.join(split.column_names)}); set "
                    "data.hf_features / data.hf_label"
                )
    x, y = _examples(train, features, source), _column(train, label)
    ids = _column(train, partition_by) if partition_by in train.column_names else None
    if test is None:
        held = stratified_holdout(y, test_fraction, seed)
        x_test, y_test = x[held], y[held]
        x, y = x[~held], y[~held]
        ids = None if ids is None else ids[~held]
    else:
        x_test, y_test = _examples(test, features, source), _column(test, label)
        if x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"data.hf_dataset = {source!r}: its {test_split} split's examples are "
                f"{x_test.shape[1:]}, its train split's {x.shape[1:]}; give both splits "
                "examples of one shape"
            )
    y, y_test = _int_labels(y, y_test)
    return HubArrays(x, y, x_test, y_test, ids)


def _splits(source: str, test_split: str):
    """The (train, test or None) ``datasets.Dataset`` splits of ``source``."""
    try:
        if Path(source).exists():
            # FederatedDataset hands its name to datasets.load_dataset, which does not
            # read a folder written by save_to_disk (only load_from_disk does), so a
            # local set is loaded here and cut by the partitioners directly.
            from datasets import DatasetDict, load_from_disk

            loaded = load_from_disk(source)
            if not isinstance(loaded, DatasetDict):
                return loaded, None
            if "train" not in loaded:
                raise DataError(f"data.hf_dataset = {source!r} has no 'train' split")
            return loaded["train"], loaded.get(test_split)
        from flwr_datasets import FederatedDataset
        from flwr_datasets.partitioner import IidPartitioner

        # One partition: pwfl cuts the clients' split itself, from the whole train split.
        fds = FederatedDataset(
            dataset=source, partitioners={"train": IidPartitioner(1)}, shuffle=False
        )
        train = fds.load_split("train")
        try:
            test = fds.load_split(test_split)
        except ValueError:
            test = None  # no such split: hold out test_fraction of train
        return train, test
    except DataError:
        raise
    except Exception as err:
        problem = " ".join(str(err).split())[:300]
        raise DataError(
            f"cannot load data.hf_dataset = {source!r} ({type(err).__name__}: {problem}); "
            "give a hub id on a machine with a network, or a folder saved with "
            "Dataset.save_to_disk"
        ) from None


def _examples(split, column: str, source: str) -> np.ndarray:
    """A column as float32 examples ``(N, ...)``: images ``(N, C, H, W)`` in [0, 1]."""
    x = _column(split, column)
    if x.dtype == object:  # rows that datasets did not stack: of one shape, or not
        shapes = {np.shape(row) for row in x}
        if len(shapes) > 1:
            raise DataError(
                f"data.hf_dataset = {source!r}: column {column!r} holds examples of "
                f"{len(shapes)} shapes (e.g. {sorted(shapes)[:2]}); pwfl needs one shape: "
                "resize them before saving the set"
            )
        x = np.stack(list(x))
    from datasets import Image

    if isinstance(split.features[column], Image) or x.dtype == np.uint8:
        # images, pixels 0..255: (N, H, W) or (N, H, W, C) -> (N, C, H, W)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32) / np.float32(255.0)
    if x.ndim == 1:  # one number per example
        x = x[:, None]
    return np.ascontiguousarray(x, dtype=np.float32)


def _column(split, column: str) -> np.ndarray:
    # All rows at once, as NumPy (``split[column]`` is a lazy Column in datasets 4).
    return np.asarray(split.with_format("numpy")[: len(split)][column])


def _int_labels(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer labels as they are; others (strings) numbered in sorted order."""
    if np.issubdtype(train.dtype, np.integer) and np.issubdtype(test.dtype, np.integer):
        return train.astype(np.int64), test.astype(np.int64)
    classes, codes = np.unique(np.concatenate([train, test]), return_inverse=True)
    del classes
    return codes[: len(train)].astype(np.int64), codes[len(train) :].astype(np.int64)

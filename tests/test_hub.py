"""Hugging Face data sets from a folder written by save_to_disk: shapes, natural splits, a run."""

from __future__ import annotations

import numpy as np
import pytest

from pwfl import data
from pwfl.config import DataConfig, load_config
from pwfl.errors import ConfigError, DataError
from pwfl.runner import run_experiment

from .conftest import CONFIGS

WRITERS = ("w0", "w1", "w2")


@pytest.fixture(scope="module")
def femnist_like(tmp_path_factory):
    """A FEMNIST-shaped set: 8x8 grey images, a label, the writer of each row;
    train (unequal writers) and test splits, saved to a folder."""
    import datasets

    rng = np.random.default_rng(0)

    def split(rows: int, writers: list[str]) -> datasets.Dataset:
        labels = rng.integers(0, 4, rows)
        images = [(np.full((8, 8), 40 * y) + rng.integers(0, 30, (8, 8))) for y in labels]
        table = datasets.Dataset.from_dict(
            {
                "image": [im.astype(np.uint8) for im in images],
                "character": labels.tolist(),
                "writer_id": writers,
            }
        )
        return table.cast_column("image", datasets.Image())

    writers = [WRITERS[i % 3] for i in range(60)] + ["w2"] * 12  # w2 writes most
    whole = datasets.DatasetDict(
        {"train": split(len(writers), writers), "test": split(40, ["t"] * 40)}
    )
    path = tmp_path_factory.mktemp("femnist") / "saved"
    whole.save_to_disk(str(path))
    return path, np.array(writers)


def _cfg(path, **fields) -> DataConfig:
    base = dict(name="hf", hf_dataset=str(path), hf_label="character", num_clients=3)
    return DataConfig(**{**base, **fields})


def test_a_saved_folder_loads_as_images_in_zero_one(femnist_like):
    path, writers = femnist_like
    cfg = _cfg(path)
    train, test = data.load_dataset(cfg, 0)
    assert tuple(train.x.shape) == (len(writers), 1, 8, 8) and len(test) == 40
    assert 0 <= float(train.x.min()) and float(train.x.max()) <= 1
    assert data.dataset_info(cfg) == data.DatasetInfo((1, 8, 8), 4)
    assert data.fitting_models(data.dataset_info(cfg))[:2] == ["cnn", "small-cnn"]


def test_natural_partitions_give_each_client_exactly_one_writers_rows(femnist_like):
    path, writers = femnist_like
    parts = data.partition_indices(_cfg(path, partitioner="natural"), 0)
    seen = []
    for part in parts:
        owners = set(writers[part])
        assert len(owners) == 1  # one writer per client
        (owner,) = owners
        assert sorted(part.tolist()) == np.flatnonzero(writers == owner).tolist()  # all of them
        seen.append(owner)
    assert sorted(seen) == sorted(WRITERS)


def test_iid_partitions_are_deterministic_for_a_seed(femnist_like, tmp_path, monkeypatch):
    path, _ = femnist_like
    cfg = _cfg(path, partitioner="iid")
    first = data.partition_indices(cfg, 0)
    monkeypatch.setenv("PWFL_CACHE", str(tmp_path))  # computed again, not read back
    again = data.partition_indices.__wrapped__(cfg, 0)
    other = data.partition_indices.__wrapped__(cfg, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_natural_with_another_client_count_names_the_count(femnist_like):
    path, _ = femnist_like
    with pytest.raises(DataError, match="set data.num_clients = 3"):
        data.partition_indices(_cfg(path, partitioner="natural", num_clients=5), 0)


def test_a_missing_column_or_folder_is_one_line(femnist_like, tmp_path):
    path, _ = femnist_like
    with pytest.raises(DataError, match="no column 'label'.*data.hf_label"):
        data.load_dataset(_cfg(path, hf_label="label"), 0)
    with pytest.raises(DataError, match="needs data.hf_dataset"):
        data.load_dataset(_cfg(""), 0)


def test_a_tiny_natural_run_trains_on_the_writers(femnist_like, tmp_path):
    path, _ = femnist_like
    overrides = [
        "data.name=hf",
        f"data.hf_dataset={path}",
        "data.hf_label=character",
        "data.partitioner=natural",
        "data.num_clients=3",
        "strategy.num_rounds=1",
        "strategy.k=1",
        "model.name=mlp",
    ]
    summary = run_experiment(
        load_config(CONFIGS / "tiny.toml", overrides), tmp_path / "out", quiet=True
    )
    sets = [v for k, v in summary.items() if isinstance(v, dict) and k.isdigit()]
    assert len(sets) == 1 and 0 <= sets[0]["final_accuracy"] <= 1


def test_a_hub_id_is_read_through_federated_dataset(femnist_like, monkeypatch):
    # No network: datasets.load_dataset, which FederatedDataset calls, returns the
    # saved set's train split alone, so the server's test set is held out of it.
    import datasets

    saved, writers = femnist_like
    asked = []

    def offline_hub(path=None, name=None, **kwargs):
        asked.append(path)
        return datasets.DatasetDict({"train": datasets.load_from_disk(str(saved))["train"]})

    monkeypatch.setattr(datasets, "load_dataset", offline_hub)
    cfg = _cfg("someone/femnist-like", test_fraction=0.25)
    train, test = data.load_dataset(cfg, 0)
    assert asked == ["someone/femnist-like"]
    assert len(train) + len(test) == len(writers)
    assert abs(len(test) - 0.25 * len(writers)) <= 4  # stratified over 4 labels


def _saved(tmp_path, train_sides, test_sides, test_label="character"):
    """A folder with train and test splits of grey square images of the given sides."""
    import datasets

    def split(sides, label):
        images = [np.zeros((s, s), np.uint8) for s in sides]
        table = datasets.Dataset.from_dict({"image": images, label: [0] * len(sides)})
        return table.cast_column("image", datasets.Image())

    path = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": split(train_sides, "character"), "test": split(test_sides, test_label)}
    ).save_to_disk(str(path))
    return path


@pytest.mark.parametrize(
    ("train", "test", "test_label", "message"),
    [
        ([8] * 6, [8] * 3, "other", "its test split has no column 'character'"),
        ([8, 8, 6, 8, 8, 8], [8] * 3, "character", "holds examples of 2 shapes"),
        ([8] * 6, [6] * 3, "character", r"test split's examples are \(1, 6, 6\)"),
    ],
)
def test_splits_that_do_not_fit_together_are_one_line(tmp_path, train, test, test_label, message):
    path = _saved(tmp_path, train, test, test_label)
    with pytest.raises(DataError, match=message) as err:
        data.load_dataset(_cfg(path, num_clients=2), 0)
    assert "\n" not in str(err.value)


def test_augmenting_hub_images_is_checked_on_the_loaded_examples(femnist_like):
    from pwfl.runner import check_user_code

    path, _ = femnist_like
    overrides = ["data.name=hf", f"data.hf_dataset={path}", "data.hf_label=character"]
    cfg = load_config(CONFIGS / "tiny.toml", [*overrides, "train.augment=true"])
    check_user_code(cfg)  # images (1, side, side): augmentation applies


def test_hub_keys_for_another_data_set_are_one_line():
    with pytest.raises(ConfigError, match="data.hf_dataset") as info:
        load_config(CONFIGS / "tiny.toml", ["data.hf_dataset=flwrlabs/femnist"])
    assert "data.name = hf" in str(info.value) and "\n" not in str(info.value)

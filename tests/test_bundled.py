"""MNIST-1D and scikit-learn's digits: built offline, seeded, and trained end to end."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pwfl import bundled, data
from pwfl.config import DataConfig, load_config
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"
SMALL = ["data.num_clients=3", "strategy.num_rounds=1", "strategy.k=1"]


@pytest.mark.parametrize(
    ("name", "shape", "total"),
    [("mnist1d", (1, 40), bundled.MNIST1D_SAMPLES), ("digits", (1, 8, 8), 1797)],
)
def test_loads_offline_with_its_shape_and_ten_classes(name, shape, total):
    cfg = DataConfig(name=name, test_fraction=0.2)
    train, test = data.load_dataset(cfg, 0)
    assert tuple(train.x.shape[1:]) == shape == data.dataset_info(name).input_shape
    assert len(train) + len(test) == total
    assert abs(len(test) - 0.2 * total) <= 10  # stratified: rounded per label
    for split in (train, test):
        assert sorted(split.y.unique().tolist()) == list(range(10))
        assert split.x.dtype == train.x.dtype and bool(split.x.isfinite().all())


@pytest.mark.parametrize("name", ["mnist1d", "digits"])
def test_same_seed_same_examples_other_seed_other_split(name, tmp_path, monkeypatch):
    cfg = DataConfig(name=name)
    first = data.load_dataset(cfg, 0)[0]
    monkeypatch.setenv("PWFL_CACHE", str(tmp_path))  # built again, not read back
    data._load_raw.cache_clear()
    again = data.load_dataset.__wrapped__(cfg, 0)[0]
    other = data.load_dataset.__wrapped__(cfg, 1)[0]
    assert np.array_equal(first.x.numpy(), again.x.numpy())
    assert np.array_equal(first.y.numpy(), again.y.numpy())
    assert not np.array_equal(first.y.numpy(), other.y.numpy())


def test_mnist1d_is_drawn_from_the_seed_and_cached(tmp_path):
    a = bundled.mnist1d_arrays(0.2, 3, tmp_path)
    assert len(list(tmp_path.glob("mnist1d-*.npz"))) == 1
    cached = bundled.mnist1d_arrays(0.2, 3, tmp_path)
    other = bundled.mnist1d_arrays(0.2, 4, None)
    assert all(np.array_equal(x, y) for x, y in zip(a, cached, strict=True))
    assert not np.array_equal(a[0], other[0])  # other signals, not only another split


def test_drawing_mnist1d_leaves_the_global_generators_alone():
    random.seed(7)
    np.random.seed(7)
    bundled.mnist1d_arrays(0.2, 5, None)
    after = random.random(), np.random.random()
    random.seed(7)
    np.random.seed(7)
    assert after == (random.random(), np.random.random())


def test_the_models_that_fit_each_set():
    assert data.fitting_models(data.dataset_info("mnist1d")) == ["mlp", "logreg", "cnn1d"]
    assert data.fitting_models(data.dataset_info("digits")) == [
        "cnn",
        "small-cnn",
        "mlp",
        "logreg",
    ]


def test_a_model_that_does_not_fit_is_one_line_naming_the_set_and_the_fits():
    cfg = load_config(TINY, ["data.name=mnist1d", "model.name=cnn"])
    with pytest.raises(ConfigError) as err:
        data.check_inputs(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "'cnn'" in message and "'mnist1d'" in message
    assert message.endswith("models that fit it: mlp, logreg, cnn1d")


@pytest.mark.parametrize(
    ("name", "model"), [("mnist1d", "cnn1d"), ("mnist1d", "mlp"), ("digits", "logreg")]
)
def test_a_tiny_run_trains_on_the_set(name, model, tmp_path):
    cfg = load_config(TINY, [*SMALL, f"data.name={name}", f"model.name={model}"])
    summary = run_experiment(cfg, tmp_path / "out", quiet=True)
    sets = [v for k, v in summary.items() if isinstance(v, dict) and k.isdigit()]
    assert len(sets) == 1
    assert sets[0]["final_accuracy"] > 0.15  # above the 0.1 of guessing among ten


def test_cnn1d_gives_one_output_per_class_and_is_seeded():
    import torch

    from pwfl.models import build_model

    model = build_model("cnn1d", (1, 40), 10, seed=4)
    assert tuple(model(torch.zeros(3, 1, 40)).shape) == (3, 10)
    again = build_model("cnn1d", (1, 40), 10, seed=4).state_dict()
    assert all(torch.equal(t, again[k]) for k, t in model.state_dict().items())
    with pytest.raises(ValueError, match="needs signals"):
        build_model("cnn1d", (1, 28, 28))

"""The server's validation split: disjoint from its test set, and what selection reads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pwfl import synthetic, training
from pwfl.apps.server_app import load_weights
from pwfl.apps.settings import train_settings
from pwfl.config import DataConfig, load_config
from pwfl.data import (
    DataError,
    load_dataset,
    server_split,
    server_test_data,
    server_validation_data,
)
from pwfl.runner import run_experiment

from .conftest import CONFIGS
from .scripted import run_scripted
from .test_data import _write_mnist
from .test_engine import compute
from .test_engine import config as scripted_config


def rows_of(data) -> list[bytes]:
    return sorted(row.numpy().tobytes() for row in data.x)


def held_out(cfg: DataConfig):
    """Everything the server holds back from the clients, before it is split in two."""
    if cfg.name in synthetic.NAMES:
        x, y = synthetic.test_set(
            cfg.synthetic_alpha, cfg.synthetic_beta, 0, cfg.num_clients, cfg.name == synthetic.IID
        )
        return training.ClientData(x=torch.from_numpy(x), y=torch.from_numpy(y))
    return load_dataset(cfg, 0)[1]


def check_split(cfg: DataConfig) -> tuple[training.ClientData, training.ClientData]:
    validation, test = server_validation_data(cfg, 0), server_test_data(cfg, 0)
    whole = held_out(cfg)
    assert len(validation) > 0 and len(test) > 0
    assert not set(rows_of(validation)) & set(rows_of(test)), "an example in both sets"
    assert sorted(rows_of(validation) + rows_of(test)) == rows_of(whole)
    # The same share of every label goes to validation (a stratified split).
    for label in torch.unique(whole.y).tolist():
        count = int((whole.y == label).sum())
        assert int((validation.y == label).sum()) == round(count * cfg.validation_fraction)
    return validation, test


def test_mnist5k_validation_is_a_fifth_of_every_digit_of_the_held_out_images():
    validation, test = check_split(DataConfig(name="mnist-5k"))
    assert torch.bincount(validation.y, minlength=10).tolist() == [20] * 10
    assert torch.bincount(test.y, minlength=10).tolist() == [80] * 10


@pytest.mark.parametrize("name", ["synthetic", "synthetic-iid"])
def test_synthetic_validation_and_test_split_the_test_clients_fresh_examples(name):
    check_split(DataConfig(name=name, num_clients=30))


def test_a_torchvision_sets_test_split_is_split_the_same_way(tmp_path):
    root = tmp_path / "mnist-val"
    _write_mnist(root, "MNIST", n_train=20, n_test=50)
    validation, _ = check_split(DataConfig(name="mnist", root=str(root), validation_fraction=0.4))
    assert len(validation) == 20


def test_the_split_is_seeded_and_follows_the_fraction():
    cfg = DataConfig(name="mnist-5k")
    again = server_split.__wrapped__(cfg, 0)[0]
    assert torch.equal(again.x, server_validation_data(cfg, 0).x)
    assert not torch.equal(server_validation_data(cfg, 1).x, again.x)
    assert len(server_validation_data(DataConfig(validation_fraction=0.5), 0)) == 500


def test_a_held_out_set_too_small_to_split_is_one_clear_error(tmp_path):
    root = tmp_path / "mnist-tiny"
    _write_mnist(root, "MNIST", n_train=20, n_test=2)
    cfg = DataConfig(name="mnist", root=str(root))
    with pytest.raises(DataError, match="data.validation_fraction") as info:
        server_validation_data(cfg, 0)
    assert "\n" not in str(info.value)


def test_every_round_evaluates_each_set_on_validation_and_test(tmp_path):
    cfg = load_config(CONFIGS / "tiny.toml")
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds[["val_accuracy", "val_loss"]].notna().all().all()
    assert (rounds["val_loss"] != rounds["loss"]).all()
    # The last row of each set is its final weights tested on the validation split.
    settings = train_settings(cfg)
    validation = server_validation_data(cfg.data, cfg.seed)
    for ws, arrays in load_weights(tmp_path / "final_weights.npz").items():
        state = {k: torch.tensor(v) for k, v in arrays.items()}
        metrics = training.evaluate(state, validation, settings)
        last = rounds[rounds["weight_set"].astype(str) == ws].iloc[-1]
        assert last["val_accuracy"] == metrics["accuracy"]
        assert last["val_loss"] == metrics["loss"]


# ---------------------------------------------------------------- loss-aware allocation


def constant(test_loss: float, val_loss: float):
    """A server evaluation that reports fixed losses, whatever the weights."""
    return lambda arrays: {
        "accuracy": 0.5,
        "loss": test_loss,
        "val_accuracy": 0.5,
        "val_loss": val_loss,
    }


def allocation(mode: str, losses: list[tuple[float, float]]) -> pd.DataFrame:
    """Which client trained which set in which round, with these (test, validation)
    losses per set, under the loss-aware policy."""
    cfg = scripted_config(
        "strategy.name=pwfl",
        "strategy.group_policy=loss-aware",
        f"strategy.mode={mode}",
        "data.num_clients=12",
        "strategy.num_rounds=4",
        # The modelled clock: on the measured one an aggregation takes its host time,
        # and in async mode which set's group comes first would follow this host.
        "clock.compute=modelled",
    )
    rows, _ = run_scripted(
        cfg,
        compute,
        examples=lambda client, server_round: int(10 * compute(client, server_round)),
        set_evaluate=[constant(*p) for p in losses],
    )
    _, clients, _ = rows.frames()
    train = clients[clients["phase"] == "train"]
    return train[["round", "client", "weight_set"]].sort_values(["round", "client"])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_loss_aware_allocates_from_validation_losses_never_test_losses(mode):
    base = allocation(mode, [(0.1, 1.0), (5.0, 1.0)])
    other_test = allocation(mode, [(5.0, 1.0), (0.1, 1.0)])
    pd.testing.assert_frame_equal(base.reset_index(drop=True), other_test.reset_index(drop=True))
    other_validation = allocation(mode, [(0.1, 0.1), (5.0, 5.0)])
    assert not base.reset_index(drop=True).equals(other_validation.reset_index(drop=True))
    # Set 1, far behind on validation, gets most of the clients after round 1.
    later = other_validation[other_validation["round"] > 1]["weight_set"].astype(str)
    assert (later == "1").mean() > 0.7


def test_the_scripted_rows_carry_what_the_validation_split_returned():
    rows, _ = run_scripted(
        scripted_config("strategy.name=pwfl"),
        lambda c, r: 1.0,
        set_evaluate=[constant(0.3, 0.7), constant(0.4, 0.9)],
    )
    rounds, _, _ = rows.frames()
    by_set = rounds.groupby("weight_set")[["loss", "val_loss"]].first()
    assert by_set.to_dict("index") == {
        "0": {"loss": 0.3, "val_loss": 0.7},
        "1": {"loss": 0.4, "val_loss": 0.9},
    }
    assert np.isfinite(rounds["val_accuracy"]).all()

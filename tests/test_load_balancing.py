"""Proportional load balancing against its closed form: one device five times slower.

The slow client should settle at the share of an epoch that matches its speed
(0.2 of an epoch: within one batch, since training runs whole batches), and the
round's finish spread (slowest over median round trip) should come near 1.
"""

from __future__ import annotations

import math

import pandas as pd

from pwfl.config import load_config
from pwfl.data import client_size
from pwfl.devices import make_profiles
from pwfl.runner import run_experiment

from .conftest import CONFIGS


def test_the_slow_client_settles_at_its_share_of_an_epoch_and_the_spread_near_one(tmp_path):
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            "strategy.name=fedavg",
            "data.num_clients=5",  # 800 examples each, 640 to train on: 20 batches of 32
            "strategy.num_rounds=4",
            "strategy.fraction_evaluate=0",
            "clients.profile=tiers",
            "clients.tiers=0.8:1.0,0.2:0.2",
            "stragglers.load_balancing=proportional",
        ],
    )
    slow = [c for c, p in make_profiles(cfg.clients, 5, cfg.seed).items() if p.speed < 1]
    assert len(slow) == 1
    run_experiment(cfg, tmp_path, quiet=True)
    train = pd.read_csv(tmp_path / "clients.csv").query("phase == 'train'")
    size = client_size(cfg.data, cfg.seed, slow[0])
    assert size == 640
    batches_per_epoch = math.ceil(size / cfg.train.batch_size)
    settled = train[(train["client"] == slow[0]) & (train["round"] > 1)]
    for asked, run in zip(settled["local_epochs"], settled["examples_run"], strict=True):
        assert abs(asked - 0.2) * batches_per_epoch <= 1.0
        assert abs(run / size - 0.2) * batches_per_epoch <= 1.0
    spread = train.groupby("round")["rtt_s"].agg(lambda rtt: rtt.max() / rtt.median())
    assert spread.loc[1] > 4  # before balancing the slow device takes about five times as long
    assert (spread.loc[2:] < 1.2).all()
    # Fast clients keep their whole epoch.
    fast = train[(train["client"] != slow[0]) & (train["round"] > 1)]
    assert (fast["local_epochs"].round(6) == 1.0).all()

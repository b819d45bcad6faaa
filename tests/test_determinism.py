"""The simulated clock depends on the config and the seed, never on the host.

Unequal devices, proportional load balancing and a deadline: the epochs a client
is given and whether its reply is late used to follow measured CPU time. Now
the same config and seed give the same records in every column but those
measured on the host (``*_wall_s``, ``*_measured_s``), for every strategy, also
while another process keeps both cores busy during one of the runs.
"""

from __future__ import annotations

import multiprocessing
import time

import pandas as pd
import pytest

from pwfl.config import load_config
from pwfl.runner import run_experiment
from pwfl.schema import CLIENTS, ROUNDS

from .conftest import CONFIGS

SETTING = [
    "data.num_clients=6",
    "strategy.num_rounds=2",  # round 2 is planned from round 1's simulated times
    "clients.profile=tiers",
    "clients.tiers=0.5:1.0,0.34:0.5,0.16:0.1",  # 3 fast, 2 slower, 1 always late
    "stragglers.load_balancing=proportional",
    # 100 resampled examples per client (80 to train on): replies of 0.08 to 0.12
    # simulated seconds, so the deadline that the slowest tier misses is 0.2.
    "data.partitioner=resample",
    "data.examples_per_client=100",
    "stragglers.deadline_s=0.2",
]
STRATEGIES = {
    "fedavg": ["strategy.name=fedavg"],
    "pwfl": ["strategy.name=pwfl"],
    "pwfl-sequential": ["strategy.name=pwfl-sequential"],
    "pwfl async": ["strategy.name=pwfl", "strategy.mode=async"],
}
HOST = [
    c.name
    for table in (ROUNDS, CLIENTS)
    for c in table.columns
    if c.name.endswith(("_wall_s", "_measured_s"))
]


def _spin(stop: float) -> None:
    while time.time() < stop:
        pass


def _deterministic(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in HOST if c in frame])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_config_and_seed_same_records_even_on_a_loaded_host(strategy, tmp_path):
    cfg = load_config(CONFIGS / "tiny.toml", [*SETTING, *STRATEGIES[strategy]])
    run_experiment(cfg, tmp_path / "quiet", quiet=True)
    # Both cores busy with another process for the whole of the second run.
    stop = time.time() + 60
    hogs = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(2)]
    for hog in hogs:
        hog.start()
    try:
        run_experiment(cfg, tmp_path / "loaded", quiet=True)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        a = _deterministic(pd.read_csv(tmp_path / "quiet" / name))
        b = _deterministic(pd.read_csv(tmp_path / "loaded" / name))
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    clients = pd.read_csv(tmp_path / "quiet" / "clients.csv")
    train = clients[clients["phase"] == "train"]
    # The setting exercises what used to follow the host: fractional epochs and a
    # reply past the deadline.
    assert (train["local_epochs"] < 1).any()
    assert (train["status"] == "late").any() or strategy == "pwfl async"
    assert "train_measured_s" in HOST and "round_wall_s" in HOST and "aggregate_wall_s" in HOST

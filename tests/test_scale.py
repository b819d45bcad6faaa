"""A population of a billion clients costs what its ten sampled clients cost.

Nothing may be listed, drawn or kept per client of the population, on the server
or in a client process (the inline backend runs both here): a structure of one
byte per client would be a gigabyte, a Python loop over the clients minutes.
"""

from __future__ import annotations

import tracemalloc

import pandas as pd

from pwfl.config import load_config
from pwfl.runner import run_experiment

from .conftest import CONFIGS

BILLION = 1_000_000_000
LIMIT_BYTES = 256 * 2**20
"""Peak of Python and NumPy allocations during the run (a run of 1,000 clients: ~95 MB,
mostly modules imported on the way; one byte per client would be 1,000 MB more)."""


def test_a_billion_clients_ten_sampled_two_rounds(tmp_path):
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            "data.name=synthetic",
            "model.name=logreg",
            f"data.num_clients={BILLION}",
            f"strategy.fraction_train={10 / BILLION}",
            "strategy.num_rounds=2",
            "checkpoint.every=1",
        ],
    )
    tracemalloc.start()
    try:
        summary = run_experiment(cfg, tmp_path, quiet=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LIMIT_BYTES, f"{peak / 2**20:.0f} MiB allocated at the peak"
    assert summary["0"]["rounds"] == summary["1"]["rounds"] == 2
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients.query("phase == 'train'")
    assert train.groupby("round")["client"].nunique().tolist() == [10, 10]
    assert train.groupby(["round", "weight_set"]).size().tolist() == [5, 5, 5, 5]
    assert train["client"].max() > BILLION // 100  # ids drawn over the whole population
    assert (train["status"] == "ok").all()
    evaluated = clients.query("phase == 'evaluate'")
    assert set(evaluated["client"]) <= set(train["client"])  # half of each round's cohort
    assert len(evaluated) == 10

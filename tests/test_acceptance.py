"""Acceptance runs on the full quick setting (10 clients, 10 rounds): slow, run with --runslow."""

from __future__ import annotations

import pandas as pd
import pytest

from pwfl.compare import run_comparison
from pwfl.config import load_config

from .conftest import CONFIGS

pytestmark = pytest.mark.slow


def test_quick_comparison_meets_the_targets(tmp_path, ray_session):
    cfg = load_config(CONFIGS / "quick.toml")
    summary = run_comparison(cfg, ["fedavg", "pwfl-sequential", "pwfl"], [0], tmp_path, quiet=True)
    by = summary.set_index("strategy")
    rounds = pd.read_csv(tmp_path / "comparison.csv")
    # FedAvg reaches 0.93 server-side test accuracy within 10 rounds.
    assert rounds[rounds["strategy"] == "fedavg"]["accuracy"].max() >= 0.93
    # PWFL rounds are at most 0.6 x as long as sequential ones on the simulated clock ...
    ratio = (
        by.loc["pwfl", "mean_round_sim_s_mean"] / by.loc["pwfl-sequential", "mean_round_sim_s_mean"]
    )
    assert ratio <= 0.6
    # ... and not slower on the host clock.
    assert (
        by.loc["pwfl", "mean_round_wall_s_mean"]
        <= by.loc["pwfl-sequential", "mean_round_wall_s_mean"]
    )
    # Each PWFL weight set reaches 0.90.
    pwfl = rounds[rounds["strategy"] == "pwfl"]
    assert (pwfl.groupby("weight_set")["accuracy"].max() >= 0.90).all()


def test_same_command_twice_gives_identical_accuracies(tmp_path, ray_session):
    from pwfl.runner import run_experiment

    cfg = load_config(CONFIGS / "quick.toml", ["strategy.name=fedavg"])
    for name in ("a", "b"):
        run_experiment(cfg, tmp_path / name, quiet=True)
    a = pd.read_csv(tmp_path / "a" / "rounds.csv")
    b = pd.read_csv(tmp_path / "b" / "rounds.csv")
    for column in ("accuracy", "loss", "client_accuracy"):
        assert a[column].tolist() == b[column].tolist()

"""The multi-model group policies: round-robin (MFA-RR) and loss-aware, sync and async."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl.config import load_config
from pwfl.partition import (
    GroupContext,
    draw_group,
    loss_shares,
    split_clients,
    split_loss_aware,
    split_round_robin,
)
from pwfl.runner import run_experiment

from .conftest import CONFIGS


def test_round_robin_cycles_each_client_through_the_sets():
    clients = list(range(12))
    seen = {c: [] for c in clients}
    for r in range(1, 4):
        groups = split_round_robin(clients, 3, r)
        assert sorted(c for g in groups for c in g) == clients  # disjoint, all placed
        for ws, group in enumerate(groups):
            for c in group:
                seen[c].append(ws)
    assert all(sorted(sets) == [0, 1, 2] for sets in seen.values())


def test_loss_shares_follow_the_losses_and_are_equal_before_any():
    assert loss_shares([1.0, 3.0]).tolist() == [0.25, 0.75]
    assert loss_shares([float("nan"), float("nan")]).tolist() == [0.5, 0.5]


def test_loss_aware_gives_the_set_furthest_behind_the_most_clients():
    rng = np.random.default_rng(0)
    counts = np.zeros(2)
    for _ in range(200):
        groups = split_loss_aware(list(range(20)), 2, rng, (0.5, 2.0))
        assert sorted(c for g in groups for c in g) == list(range(20))
        counts += [len(g) for g in groups]
    assert counts[1] / counts.sum() == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize("policy", ["round-robin", "loss-aware"])
def test_policies_are_seeded_through_the_registry(policy):
    ctx = GroupContext(2, (1.0, 2.0))
    draws = [
        split_clients(policy, list(range(10)), 2, np.random.default_rng(5), context=ctx)
        for _ in range(2)
    ]
    assert draws[0] == draws[1]
    group = draw_group(policy, list(range(10)), 1, 2, 3, np.random.default_rng(5), {}, ctx)
    assert set(group) <= set(range(10)) and group


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("policy", ["round-robin", "loss-aware"])
def test_runs_with_the_policy_never_give_a_client_two_sets_at_once(policy, mode, tmp_path):
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            f"strategy.group_policy={policy}",
            f"strategy.mode={mode}",
            "data.num_clients=6",
            "strategy.num_rounds=3",
        ],
    )
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert set(rounds["weight_set"].astype(str)) == {"0", "1"}
    train = pd.read_csv(tmp_path / "clients.csv").query("phase == 'train'")
    for client, rows in train.groupby("client"):
        spans = rows.sort_values("sim_start_s")[["sim_start_s", "sim_end_s"]].to_numpy()
        assert (spans[1:, 0] >= spans[:-1, 1] - 1e-9).all(), client
    if policy == "round-robin" and mode == "sync":
        turn = (train["client"] + train["round"]) % 2
        assert (turn == train["weight_set"].astype(int)).all()

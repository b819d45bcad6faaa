"""The round engine and its strategies on a scripted federation: closed forms on the clock.

Clients answer at once with compute times the test sets; links are infinitely
fast with no latency, so a client's round trip is exactly its compute time and
every round's length has a closed form.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pwfl.config import load_config

from . import plugins
from .scripted import run_scripted

FAST_LINKS = [
    "clients.up_mbps=inf",
    "clients.down_mbps=inf",
    "clients.latency_ms=0",
    "server.up_mbps=inf",
    "server.down_mbps=inf",
]


def config(*overrides: str):
    return load_config(
        None,
        [
            "data.num_clients=6",
            "strategy.num_rounds=3",
            "strategy.k=2",
            "strategy.executor=serial",
            "strategy.fraction_evaluate=0",
            "checkpoint.every=0",
            "clock.compute=measured",  # the scripted clients report their compute time
            *FAST_LINKS,
            *overrides,
        ],
    )


def compute(client: int, server_round: int) -> float:
    return 1.0 + client + 0.5 * server_round


def groups_of(clients, server_round):
    train = clients[(clients["phase"] == "train") & (clients["round"] == server_round)]
    return {ws: sorted(rows["client"]) for ws, rows in train.groupby("weight_set")}


def test_pwfl_groups_start_together_and_the_round_ends_with_the_last_aggregation():
    rows, _ = run_scripted(config("strategy.name=pwfl"), compute)
    rounds, clients, server = rows.frames()
    previous_end = 0.0
    for server_round in (1, 2, 3):
        mine = rounds[rounds["round"] == server_round].set_index("weight_set")
        groups = groups_of(clients, server_round)
        assert sorted(c for g in groups.values() for c in g) == list(range(6))
        for ws, members in groups.items():
            row = mine.loc[ws]
            assert row["group_start_s"] == pytest.approx(previous_end)
            assert row["train_s"] == pytest.approx(max(compute(c, server_round) for c in members))
            assert row["group_end_s"] == pytest.approx(
                row["group_start_s"] + row["train_s"] + row["aggregate_s"]
            )
        length = (mine["train_s"] + mine["aggregate_s"]).max()
        assert mine["round_sim_s"].tolist() == pytest.approx([length] * 2)
        previous_end += length
        assert mine["sim_time_s"].tolist() == pytest.approx([previous_end] * 2)
    # One aggregation interval per group, each starting when the group's last reply came.
    assert len(server) == 6
    assert (rounds["status"] == "ok").all()


def test_sequential_sends_each_group_when_the_previous_one_is_aggregated():
    rows, result = run_scripted(config("strategy.name=pwfl-sequential"), compute)
    rounds, _, _ = rows.frames()
    for _, mine in rounds.groupby("round"):
        first, second = mine.iloc[0], mine.iloc[1]
        assert second["group_start_s"] == pytest.approx(first["group_end_s"])
        total = (mine["train_s"] + mine["aggregate_s"]).sum()
        assert mine["round_sim_s"].tolist() == pytest.approx([total] * 2)
    parallel, parallel_result = run_scripted(config("strategy.name=pwfl"), compute)
    # The same split and the same weights sent: the same models, in a longer round.
    for ws in ("0", "1"):
        np.testing.assert_array_equal(
            result.weight_sets[ws]["w"], parallel_result.weight_sets[ws]["w"]
        )
    assert rounds["sim_time_s"].max() > parallel.frames()[0]["sim_time_s"].max()


def test_fedavg_is_one_group_of_every_sampled_client():
    rows, result = run_scripted(config("strategy.name=fedavg"), compute)
    rounds, clients, _ = rows.frames()
    assert rounds["weight_set"].tolist() == ["0", "0", "0"]
    for server_round in (1, 2, 3):
        assert groups_of(clients, server_round) == {"0": list(range(6))}
        row = rounds[rounds["round"] == server_round].iloc[0]
        assert row["train_s"] == pytest.approx(compute(5, server_round))
    assert result.weight_sets["0"]["w"].tolist() == [3.0] * 1000  # +1 per round


def test_async_sets_never_share_a_busy_client_and_the_faster_set_runs_ahead():
    # Client 0 is ten times slower than the rest: the set that draws it falls behind.
    def slow_zero(client: int, server_round: int) -> float:
        return 10.0 if client == 0 else 1.0

    rows, _ = run_scripted(
        config("strategy.name=pwfl", "strategy.mode=async", "strategy.num_rounds=4"), slow_zero
    )
    rounds, clients, _ = rows.frames()
    assert len(rounds) == 8 and rows.expected == 8
    train = clients[clients["phase"] == "train"].sort_values("sim_start_s")
    for _, mine in train.groupby("client"):
        starts, ends = mine["sim_start_s"].to_numpy(), mine["sim_end_s"].to_numpy()
        assert (starts[1:] >= ends[:-1] - 1e-9).all()
    for _, mine in rounds.groupby("weight_set"):
        mine = mine.sort_values("round")
        assert mine["round"].tolist() == [1, 2, 3, 4]
        # A set's next round starts when its last one ended.
        np.testing.assert_allclose(mine["group_start_s"].iloc[1:], mine["group_end_s"].iloc[:-1])
    ends = rounds.groupby("weight_set")["sim_time_s"].max()
    assert ends.max() > ends.min()  # no barrier: one set finished its rounds first


def test_a_group_is_aggregated_while_another_group_still_trains(monkeypatch):
    """Host overlap: the first group's aggregation starts before the second group's
    last reply is in (not after all groups' replies, as a barrier would)."""
    plugins.STARTS.clear()
    replied: dict[int, float] = {}

    def slow_client_five(client: int, server_round: int) -> float:
        if client == 5:
            time.sleep(0.5)  # really: the host waits for this client
        replied[client] = time.monotonic()
        return 1.0

    cfg = config(
        "strategy.name=pwfl",
        "strategy.num_rounds=1",
        "strategy.executor=threads",
        "strategy.aggregator=tests.plugins:timed_mean",
    )
    rows, _ = run_scripted(cfg, slow_client_five)
    assert len(plugins.STARTS) == 2
    assert min(plugins.STARTS) < replied[5]


def test_async_groups_mix_when_every_client_is_sampled():
    """Full participation and one slow client: each set draws from one pool of free
    clients (a client is free once its own reply is in), so the slow client does not
    stay with one set and the groups change from round to round."""

    def slow_zero(client: int, server_round: int) -> float:
        return 5.0 if client == 0 else 1.0

    rows, _ = run_scripted(
        config(
            "data.num_clients=10",
            "strategy.name=pwfl",
            "strategy.mode=async",
            "strategy.num_rounds=6",
        ),
        slow_zero,
    )
    _, clients, _ = rows.frames()
    train = clients[clients["phase"] == "train"]
    for _, mine in train.groupby("weight_set"):
        groups = {tuple(sorted(g["client"])) for _, g in mine.groupby("round")}
        assert len(groups) > 2  # not the same five clients every round
        assert mine["client"].nunique() > 5  # more clients than one group trained it
    # The slow client is not bound to one set for good.
    slow_rounds = train[(train["client"] == 0) & (train["weight_set"] == "1")]["round"]
    assert len(slow_rounds) < 6

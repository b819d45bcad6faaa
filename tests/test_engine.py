"""The round engine and its strategies on a scripted federation: closed forms on the clock.

Clients answer at once with compute times the test sets; links are infinitely
fast with no latency, so a client's round trip is exactly its compute time and
every round's length has a closed form.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr.app import MessageType

from pwfl.config import load_config
from pwfl.inline import InlineGrid

from .scripted import FAST_LINKS, run_scripted


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


# --- one training loss, and what was aggregated is what was counted ----------------


def test_every_strategy_computes_the_training_loss_with_one_formula():
    """Two clients with losses 0.1 and 0.7 on 10 examples each: Flower's metric mean
    (sum of loss x n / total) and a sum of loss x n divided by the total give different
    bits here; FedAvg and PWFL with one weight set must report the same one."""
    pairs = [(10, 0.1), (10, 0.7)]
    flower_order = sum(loss * (n / 20) for n, loss in pairs)
    other_order = sum(loss * n for n, loss in pairs) / 20
    assert flower_order != other_order  # the inputs tell the two formulas apart
    losses = {0: 0.1, 1: 0.7}
    runs = {
        name: run_scripted(
            config(f"strategy.name={name}", "strategy.k=1", "data.num_clients=2"),
            compute,
            loss=lambda client, _: losses[client],
        )[0].frames()[0]
        for name in ("fedavg", "pwfl")
    }
    fedavg, pwfl = runs["fedavg"]["train_loss"].tolist(), runs["pwfl"]["train_loss"].tolist()
    assert fedavg == pwfl == [flower_order] * 3


def test_a_client_the_server_gave_up_on_is_not_averaged():
    """Client 1 answers the host at once but takes 10 s on the simulated clock; the
    server gives up after 5 s. Its update must not reach the mean: client 0 adds 1,
    client 1 adds 3, so the weights grow by 1 a round, not by 2."""
    cfg = config(
        "strategy.name=fedavg",
        "data.num_clients=2",
        "faults.round_timeout_s=5",
        "faults.quorum=0.5",
    )
    rows, result = run_scripted(
        cfg,
        lambda client, _: 10.0 if client == 1 else 1.0,
        step=lambda client, _: 1.0 + 2 * client,
    )
    rounds, clients, _ = rows.frames()
    assert rounds["num_clients"].tolist() == [1, 1, 1]
    assert result.weight_sets["0"]["w"].tolist() == [3.0] * 1000
    train = clients[clients["phase"] == "train"]
    assert train.loc[train["client"] == 1, "status"].tolist() == ["timeout"] * 3
    assert train["aggregated"].tolist() == [c == 0 for c in train["client"]]


def test_a_reply_the_host_stops_waiting_for_is_lost_not_a_timeout():
    """The host's own limit (simulation.reply_timeout_s, real seconds) is not the
    simulated give-up time: a reply it stops waiting for is recorded as lost."""

    def slow_host(client: int, server_round: int) -> float:
        if client == 1:
            time.sleep(0.6)
        return 1.0

    cfg = config(
        "strategy.name=fedavg",
        "strategy.num_rounds=1",
        "data.num_clients=2",
        "simulation.reply_timeout_s=0.2",
    )
    rows, _ = run_scripted(cfg, slow_host)
    rounds, clients, _ = rows.frames()
    train = clients[clients["phase"] == "train"].set_index("client")
    assert train.loc[1, "status"] == "lost" and not train.loc[1, "aggregated"]
    assert train.loc[0, "status"] == "ok" and train.loc[0, "aggregated"]
    assert rounds["num_clients"].tolist() == [1]


def test_an_evaluation_the_host_stops_waiting_for_is_lost(monkeypatch):
    """Client evaluation takes no simulated time: a reply the host stopped waiting for
    is lost, with none of the client's numbers, and the round's client metrics come
    from the replies that came."""
    handle = InlineGrid._handle

    def slow_evaluation(self, message):
        if message.metadata.message_type == MessageType.EVALUATE:
            time.sleep(0.6)
        return handle(self, message)

    monkeypatch.setattr(InlineGrid, "_handle", slow_evaluation)
    cfg = config(
        "strategy.name=fedavg",
        "strategy.num_rounds=1",
        "data.num_clients=2",
        "strategy.fraction_evaluate=1.0",
        "simulation.reply_timeout_s=0.2",
    )
    rows, _ = run_scripted(cfg, lambda client, server_round: 1.0)
    rounds, clients, _ = rows.frames()
    evaluated = clients[clients["phase"] == "evaluate"]
    assert len(evaluated) == 2 and (evaluated["status"] == "lost").all()
    assert evaluated[["num_examples", "loss"]].isna().all().all()
    assert rounds["client_accuracy"].isna().all()


@pytest.mark.parametrize(
    "overrides",
    [
        ("strategy.name=fedavg",),
        ("strategy.name=pwfl",),
        ("strategy.name=pwfl", "strategy.mode=async"),
        ("strategy.name=pwfl-sequential",),
        (
            "strategy.name=fedbuff",
            "strategy.fedbuff.buffer_size=2",
            "strategy.fedbuff.concurrency=3",
        ),
    ],
)
def test_aggregated_marks_exactly_the_counted_replies(overrides):
    cfg = config(*overrides, "faults.round_timeout_s=4.2", "faults.quorum=0.1")
    rows, _ = run_scripted(cfg, compute)
    rounds, clients, _ = rows.frames()
    train = clients[clients["phase"] == "train"]
    assert train["aggregated"].notna().all()
    ok = train["status"] == "ok"
    assert (train["aggregated"] == ok).all()  # every reply counted here was averaged
    assert ok.any() and (~ok).any()  # the timeout dropped some
    per_round = train[train["aggregated"]].groupby(["round", "weight_set"]).size()
    for _, row in rounds.iterrows():
        assert row["num_clients"] == per_round.get((row["round"], row["weight_set"]), 0)


# --- offline clients ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        ("strategy.name=fedbuff", "strategy.fedbuff.buffer_size=2"),
        ("strategy.name=pwfl", "strategy.mode=async"),
    ],
)
def test_policies_without_a_barrier_wait_for_offline_clients(overrides):
    cfg = config(*overrides, "data.num_clients=4", "clients.offline_prob=0.5")
    rows, _ = run_scripted(cfg, compute)
    rounds, clients, _ = rows.frames()
    assert len(rounds) == rows.expected
    train = clients[clients["phase"] == "train"]
    assert (train["status"].isin(["ok", "unused"])).all()


def test_a_round_short_of_online_clients_goes_on_with_those_online_and_says_so():
    from pwfl.population import Population

    cfg = config("strategy.name=pwfl", "clients.offline_prob=0.6", "strategy.num_rounds=4")
    rows, _ = run_scripted(cfg, compute)
    rounds, clients, _ = rows.frames()
    people = Population(cfg, lambda client, ws: 10)
    train = clients[clients["phase"] == "train"]
    for server_round, mine in train.groupby("round"):
        assert all(people.online(c, server_round) for c in mine["client"])
    for server_round, mine in rounds.groupby("round"):
        online = sum(people.online(c, server_round) for c in range(6))
        assert mine["num_unfilled"].tolist() == [6 - online] * 2
    assert rounds["num_unfilled"].sum() > 0  # the seed gives some round a shortfall


@pytest.mark.parametrize("policy", ["fixed", "round-robin"])
def test_an_async_set_whose_own_clients_are_offline_waits_for_the_next_period(policy):
    """A group policy that names who may train a set (fixed: ``c mod k``; round-robin:
    the set's turn) can find free online clients none of which are the set's: with
    nothing in flight to free one, the set waits for the next online period."""
    from pwfl.population import Population

    for seed in range(6):
        cfg = config(
            "strategy.name=pwfl",
            "strategy.mode=async",
            f"strategy.group_policy={policy}",
            "data.num_clients=3",
            "clients.offline_prob=0.5",
            f"seed={seed}",
        )
        rows, _ = run_scripted(cfg, compute)
        rounds, clients, _ = rows.frames()
        assert len(rounds) == rows.expected
        people = Population(cfg, lambda client, ws: 10)
        train = clients[clients["phase"] == "train"]
        for _, row in train.iterrows():
            assert people.online(row["client"], people.period_at(row["sim_start_s"]))
            if policy == "fixed":
                assert row["client"] % 2 == int(row["weight_set"])
            else:
                assert (row["client"] + row["round"]) % 2 == int(row["weight_set"])


@pytest.mark.parametrize("policy", ["loss-aware", "complementary"])
def test_async_runs_repeat_when_events_tie(policy):
    """Equal compute times on the modelled clock: both sets' groups reply, and are
    aggregated, at the same simulated moments. Ties are broken by the order in which
    events were scheduled, itself simulated-time order, so every run draws the same
    groups. (On the measured clock an aggregation takes its host time, and tied sets
    finish in the host's order: those runs depend on the host, as documented.)"""
    cfg = config(
        "strategy.name=pwfl",
        "strategy.mode=async",
        f"strategy.group_policy={policy}",
        "strategy.num_rounds=4",
        "clock.compute=modelled",
    )
    runs = []
    for _ in range(3):
        rows, result = run_scripted(cfg, lambda client, server_round: 1.0)
        _, clients, _ = rows.frames()
        train = clients[clients["phase"] == "train"]
        runs.append(
            (
                train[["round", "weight_set", "client", "sim_start_s", "sim_end_s"]]
                .sort_values(["weight_set", "round", "client"])
                .to_numpy()
                .tolist(),
                [result.weight_sets[ws]["w"].tolist() for ws in ("0", "1")],
            )
        )
    ends = train.groupby(["weight_set", "round"])["sim_end_s"].max()
    assert ends.loc["0"].tolist() == ends.loc["1"].tolist()  # the sets really tie
    assert runs[0] == runs[1] == runs[2]

"""Cohort messages (``simulation.messages = cohort``): one message per pool node and job,
the same records as one message per client, client by client."""

from __future__ import annotations

import pandas as pd
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from pwfl import transport
from pwfl.config import load_config
from pwfl.engine.messaging import _shares
from pwfl.inline import InlineGrid
from pwfl.invariants import check_run
from pwfl.runner import run_experiment, simulation_nodes

from .conftest import CONFIGS

HOST = ("_wall_s", "_measured_s")

# Faults of every kind, int8 updates, a deadline that drops the slowest replies, momentum
# that travels with each client's message, clients offline, and evaluation by clients.
HARD = [
    "data.num_clients=12",
    "data.partitioner=resample",
    "data.examples_per_client=60",
    "strategy.num_rounds=3",
    "strategy.fraction_train=0.75",
    "strategy.fraction_evaluate=0.5",
    "faults.crash_prob=0.1",
    "faults.transient_prob=0.2",
    "faults.hang_prob=0.15",
    "faults.round_timeout_s=5",
    "faults.quorum=0.3",
    "comm.compression=int8",
    "clients.profile=lognormal",
    "clients.spread=0.8",
    "clients.offline_prob=0.1",
    "train.client_state=momentum",
    "simulation.pool_size=2",
]


def numbers(folder, name: str) -> pd.DataFrame:
    frame = pd.read_csv(folder / name)
    return frame.drop(columns=[c for c in frame if c.endswith(HOST)])


@pytest.fixture
def pushed(monkeypatch):
    """How many clients each message the inline grid was given carries."""
    sizes: list[int] = []
    push = InlineGrid.push_messages

    def counting(self, messages):
        messages = list(messages)
        for message in messages:
            content = message.content
            sizes.append(transport.cohort_size(content) if transport.is_cohort(content) else 1)
        return push(self, messages)

    monkeypatch.setattr(InlineGrid, "push_messages", counting)
    return sizes


@pytest.mark.parametrize(
    ("extra", "statuses"),
    [
        # the deadline drops the slowest replies (a round takes about 0.06 s here)
        (["stragglers.deadline_s=0.05"], {"retried", "late", "ok"}),
        (
            ["strategy.name=fedbuff", "strategy.fedbuff.concurrency=4", "strategy.num_rounds=8"],
            {"timeout", "failed", "ok"},
        ),
    ],
    ids=["pwfl", "fedbuff"],
)
def test_cohort_messages_give_every_number_of_per_client_messages(
    extra, statuses, tmp_path, pushed
):
    cohort = load_config(CONFIGS / "tiny.toml", [*HARD, *extra])
    client = load_config(CONFIGS / "tiny.toml", [*HARD, *extra, "simulation.messages=client"])
    run_experiment(client, tmp_path / "client", quiet=True)
    assert set(pushed[1:]) == {1}  # the discovery query, then one client per message
    pushed.clear()
    run_experiment(cohort, tmp_path / "cohort", quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        pd.testing.assert_frame_equal(
            numbers(tmp_path / "cohort", name), numbers(tmp_path / "client", name), obj=name
        )
    assert check_run(tmp_path / "cohort") == []
    # The run met what the test is about: each client's own outcome inside a message,
    # and in synchronous rounds several clients in one message (a FedBuff job is one
    # client: its messages carry one each).
    clients = pd.read_csv(tmp_path / "cohort" / "clients.csv")
    assert statuses <= set(clients["status"])
    assert (max(pushed) > 1) == ("strategy.name=fedbuff" not in extra)


def test_a_failing_client_is_its_own_error_in_the_cohort_reply():
    from flwr.clientapp import ClientApp

    InlineGrid(ClientApp(), 1)  # messages take their run from the task identity it sets
    weights = ArrayRecord()
    message = transport.cohort_message(
        1, weights, [{"client-id": 3}, {"client-id": 4}, {"client-id": 5}], "train", [None] * 3
    )
    contents = transport.cohort_contents(message.content)
    assert [transport.config_of(c)["client-id"] for c in contents] == [3, 4, 5]
    replies: list[RecordDict | Error] = [
        RecordDict({transport.METRICS: MetricRecord({"loss": 1.0})}),
        transport.client_error(ValueError("injected crash fault (round 1, try 0)")),
        RecordDict({transport.CLIENT: ConfigRecord({"partition-id": 5})}),
    ]
    reply = Message(transport.cohort_reply(replies), reply_to=message)
    first, second, third = transport.split_cohort_reply(reply, 3)
    assert not first.has_error() and transport.metrics_of(first.content)["loss"] == 1.0
    assert second.has_error() and "injected crash fault" in str(second.error.reason)
    assert transport.config_of(third.content, transport.CLIENT)["partition-id"] == 5
    assert isinstance(first, Message)


def test_a_job_is_cut_into_one_share_per_node_in_order():
    items = list(range(7))
    assert _shares(items, 3) == [[0, 1, 2], [3, 4], [5, 6]]  # type: ignore[arg-type]
    assert _shares(items, 10) == [[i] for i in items]  # type: ignore[arg-type]


def test_cohorts_need_no_more_nodes_than_client_processes():
    many = load_config(CONFIGS / "tiny.toml", ["data.num_clients=40", "simulation.ray_cpus=2"])
    assert simulation_nodes(many) == 2
    each = load_config(
        CONFIGS / "tiny.toml",
        ["data.num_clients=40", "simulation.ray_cpus=2", "simulation.messages=client"],
    )
    assert simulation_nodes(each) == 40


NODE_MEAN = [
    "data.num_clients=12",
    "data.partitioner=resample",
    "data.examples_per_client=60",
    "strategy.num_rounds=3",
    "strategy.fraction_evaluate=0.5",
    "faults.crash_prob=0.1",
    "faults.transient_prob=0.2",
    "faults.round_timeout_s=inf",
    "faults.quorum=0.3",
    "comm.compression=int8",
    "train.client_state=momentum",
    "simulation.pool_size=2",
]


def test_node_aggregation_changes_the_sums_bits_and_nothing_else(tmp_path):
    plain = load_config(CONFIGS / "tiny.toml", NODE_MEAN)
    summed = load_config(CONFIGS / "tiny.toml", [*NODE_MEAN, "simulation.node_aggregation=true"])
    run_experiment(plain, tmp_path / "plain", quiet=True)
    run_experiment(summed, tmp_path / "summed", quiet=True)
    assert check_run(tmp_path / "summed") == []
    clients = {name: numbers(tmp_path / name, "clients.csv") for name in ("plain", "summed")}
    # Round 1 trains from the same weights: every client's row is the same, its
    # update's bytes on the simulated wire included.
    first = {name: frame[frame["round"] == 1] for name, frame in clients.items()}
    pd.testing.assert_frame_equal(first["summed"], first["plain"])
    assert {"retried", "ok"} <= set(first["plain"]["status"])
    # After it, the weights differ by the mean's rounding alone: who trained, on what,
    # and the simulated clock are the same; accuracies within a rounding's reach.
    same = ["round", "client", "weight_set", "status", "num_examples", "bytes_up", "sim_end_s"]
    pd.testing.assert_frame_equal(clients["summed"][same], clients["plain"][same])
    rounds = {name: numbers(tmp_path / name, "rounds.csv") for name in ("plain", "summed")}
    gap = (rounds["summed"]["accuracy"] - rounds["plain"]["accuracy"]).abs().max()
    assert gap <= 0.01
    import numpy as np

    a = np.load(tmp_path / "plain" / "final_weights.npz")
    b = np.load(tmp_path / "summed" / "final_weights.npz")
    assert sorted(a) == sorted(b)
    worst = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    assert 0 < worst < 1e-3  # other bits, not other training


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("strategy.aggregator=median", "needs each client's update"),
        ("strategy.name=fedbuff", "needs each client's update"),
        ("faults.round_timeout_s=3600", "faults.round_timeout_s = inf"),
        ("simulation.messages=client", "simulation.messages = cohort"),
        ("strategy.group_policy=variance-reduced", "update norm"),
        ("simulation.pool_size=0", "set simulation.pool_size"),
    ],
)
def test_node_aggregation_is_refused_where_the_server_needs_each_update(override, problem):
    from pwfl.errors import ConfigError

    base = [
        "simulation.node_aggregation=true",
        "faults.round_timeout_s=inf",
        "simulation.pool_size=2",
    ]
    with pytest.raises(ConfigError, match="simulation.node_aggregation") as err:
        load_config(CONFIGS / "tiny.toml", [*base, override])
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_every_policy_with_aggregations_of_its_own_says_it_weighs_each_update():
    from pwfl.strategies import STRATEGIES
    from pwfl.strategies.base import Policy

    for cls in {*STRATEGIES.values()}:
        assert cls.each_update == (cls.aggregations is not Policy.aggregations), cls.name

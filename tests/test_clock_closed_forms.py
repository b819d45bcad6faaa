"""The modelled clock against closed forms, on the scripted federation.

Every client runs 10 examples of a model costing 1 GFLOP each at the reference
10 GFLOP/s: 1 s of compute on a device of speed 1. Links and the server are
set per test, so each round has a length that can be written down.
"""

from __future__ import annotations

import math

import pytest

from pwfl.clock import aggregation_bytes
from pwfl.config import load_config

from .scripted import run_scripted

MB = 1_000_000


def config(*overrides: str):
    return load_config(
        None,
        [
            "data.num_clients=8",
            "strategy.fraction_train=1.0",
            "strategy.num_rounds=2",
            "strategy.executor=serial",
            "strategy.fraction_evaluate=0",
            "checkpoint.every=0",
            "clients.up_mbps=8",
            "clients.down_mbps=8",
            "clients.latency_ms=20",
            *overrides,
        ],
    )


def unused(client: int, server_round: int) -> float:
    return 0.0  # the modelled clock does not read measured times


def rounds_of(cfg, size: int):
    rows, _ = run_scripted(cfg, unused, size=size)
    return rows.frames()


def one_client(clients, server_round: int = 1):
    row = clients[(clients["phase"] == "train") & (clients["round"] == server_round)].iloc[0]
    return row


UNLIMITED_SERVER = ["server.up_mbps=inf", "server.down_mbps=inf", "server.cores=8"]


def test_equal_devices_pwfl_round_is_a_fedavg_round_of_its_group_size_and_sequential_twice():
    size = MB // 4  # a 1 MB model: 1 s each way over 8 Mbit/s
    pwfl, pwfl_clients, _ = rounds_of(config("strategy.name=pwfl", *UNLIMITED_SERVER), size)
    row = one_client(pwfl_clients)
    assert row["download_s"] == pytest.approx(row["bytes_down"] * 8 / 8e6)
    assert row["compute_s"] == pytest.approx(1.0)
    assert row["upload_s"] == pytest.approx(row["bytes_up"] * 8 / 8e6)
    trip = row["download_s"] + 1.0 + row["upload_s"] + 0.02
    assert row["rtt_s"] == pytest.approx(trip)
    aggregate = aggregation_bytes([row["bytes_up"]] * 4, 4 * size, compressed=False) / 10e9
    round_length = trip + aggregate
    assert pwfl["round_sim_s"].tolist() == pytest.approx([round_length] * 4)

    # FedAvg sampling as many clients as one PWFL group: the same round.
    fedavg, _, _ = rounds_of(
        config("strategy.name=fedavg", "strategy.fraction_train=0.5", *UNLIMITED_SERVER), size
    )
    assert fedavg["round_sim_s"].tolist() == pytest.approx([round_length] * 2)
    # The same groups one after the other: K = 2 times as long.
    sequential, _, _ = rounds_of(config("strategy.name=pwfl-sequential", *UNLIMITED_SERVER), size)
    assert sequential["round_sim_s"].tolist() == pytest.approx([2 * round_length] * 4)


def test_with_one_core_the_k_aggregations_queue():
    size = MB // 4
    slow_memory = ["server.memory_gbps=0.01", "server.up_mbps=inf", "server.down_mbps=inf"]
    common = ("strategy.name=pwfl", "strategy.k=4", *slow_memory)
    many, clients, server = rounds_of(config(*common, "server.cores=4"), size)
    one, _, one_server = rounds_of(config(*common, "server.cores=1"), size)
    row = one_client(clients)
    trip = row["rtt_s"]
    aggregate = aggregation_bytes([row["bytes_up"]] * 2, 4 * size, compressed=False) / 0.01e9
    assert many["round_sim_s"].iloc[0] == pytest.approx(trip + aggregate)
    assert one["round_sim_s"].iloc[0] == pytest.approx(trip + 4 * aggregate)
    # On one core the four aggregations run one after the other, never at once.
    first = one_server[one_server["round"] == 1].sort_values("busy_start_s")
    assert first["busy_start_s"].tolist() == pytest.approx([trip + i * aggregate for i in range(4)])
    assert server[server["round"] == 1]["busy_start_s"].tolist() == pytest.approx([trip] * 4)


def test_a_saturated_server_uplink_shrinks_pwfls_advantage_as_the_model_grows():
    """8 clients with 80 Mbit/s links behind an 8 Mbit/s server uplink.

    PWFL sends all 8 downloads at once: each gets 1 Mbit/s. Sequential PWFL sends
    4 at a time: 2 Mbit/s each. The server's link time per round is the same,
    so only the compute overlaps: the larger the model, the smaller the gain.
    """
    links = ["clients.up_mbps=80", "clients.down_mbps=80", "server.down_mbps=inf"]
    saturated = [*links, "server.up_mbps=8", "server.cores=8"]
    ratios = []
    for size in (MB // 40, MB):  # 0.1 MB and 4 MB models
        pwfl, pwfl_clients, _ = rounds_of(config("strategy.name=pwfl", *saturated), size)
        seq, seq_clients, _ = rounds_of(config("strategy.name=pwfl-sequential", *saturated), size)
        row = one_client(pwfl_clients)
        assert row["download_s"] == pytest.approx(8 * row["bytes_down"] * 8 / 8e6)
        assert one_client(seq_clients)["download_s"] == pytest.approx(
            4 * row["bytes_down"] * 8 / 8e6
        )
        ratios.append(seq["round_sim_s"].iloc[0] / pwfl["round_sim_s"].iloc[0])
    small, large = ratios
    assert 1.5 < small < 2.0  # compute dominates: close to the K = 2 of unlimited links
    assert 1.0 < large < 1.1  # transfers dominate: sequential is barely slower
    assert math.isclose(large, 1.0, abs_tol=0.1)

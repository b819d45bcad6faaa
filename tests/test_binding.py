"""Clients bound to a pool of nodes or one node each: the same numbers, and one line
when the nodes a run needs never connect."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pwfl import engine
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.inline import InlineGrid
from pwfl.runner import run_experiment, simulation_nodes

from .conftest import CONFIGS
from .scripted import scripted_app

HOST = ("_wall_s", "_measured_s")


def tiny(*overrides: str):
    return load_config(CONFIGS / "tiny.toml", list(overrides))


def numbers(folder, name: str) -> pd.DataFrame:
    frame = pd.read_csv(folder / name)
    return frame.drop(columns=[c for c in frame if c.endswith(HOST)])


@pytest.mark.parametrize("extra", [[], ["train.client_state=momentum", "clients.offline_prob=0.3"]])
def test_a_pool_of_two_nodes_gives_the_numbers_of_one_node_per_client(extra, tmp_path):
    common = ["data.num_clients=6", "strategy.fraction_train=0.67", "strategy.num_rounds=3"]
    common += ["data.partitioner=resample", "data.examples_per_client=100"]  # a second a run
    pool = tiny(*common, *extra, "simulation.pool_size=2")
    node = tiny(*common, *extra, "simulation.client_binding=node")
    assert simulation_nodes(pool) == 2 and simulation_nodes(node) == 6
    run_experiment(pool, tmp_path / "pool", quiet=True)
    run_experiment(node, tmp_path / "node", quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        pd.testing.assert_frame_equal(
            numbers(tmp_path / "pool", name), numbers(tmp_path / "node", name), obj=name
        )
    clients = pd.read_csv(tmp_path / "pool" / "clients.csv").query("phase == 'train'")
    assert clients["client"].nunique() > simulation_nodes(pool)  # two nodes ran more clients


def test_too_few_nodes_for_node_binding_is_one_line_within_the_timeout(monkeypatch):
    monkeypatch.setattr(engine.nodes, "CONNECT_TIMEOUT_S", 1.0)
    cfg = tiny("data.num_clients=10", "simulation.client_binding=node")
    grid = InlineGrid(scripted_app(lambda client, server_round: 0.1), num_nodes=2)
    start = time.monotonic()
    try:
        with pytest.raises(PwflError) as info:
            engine.connect(grid, cfg)
    finally:
        grid.shutdown()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert "2 SuperNodes connected" in message and "data.num_clients = 10" in message
    assert "simulation.client_binding = pool" in message


def test_a_pool_takes_the_nodes_connected_when_its_size_is_not_known():
    cfg = tiny("data.num_clients=10")
    grid = InlineGrid(scripted_app(lambda client, server_round: 0.1), num_nodes=2)
    try:
        nodes = engine.connect(grid, cfg, pool_size=0)
    finally:
        grid.shutdown()
    assert nodes.pool and len(nodes.nodes) == 2
    first, second = nodes.take(7), nodes.take(8)
    assert {first, second} == set(nodes.nodes) and nodes.take(9) is None
    nodes.release(first)
    assert nodes.take(9) == first

"""The engine's ``fedavg`` against Flower's own, unmodified FedAvg loop, array for array.

The reference is ``flwr.serverapp.strategy.FedAvg().start(...)`` as Flower ships
it, driving the same ClientApp. Two things make its run repeatable, and both
live in the grid it is handed, not in the strategy: the grid lists only the
nodes of pwfl's seeded sample for the round (so Flower's ``random.sample`` over
them returns exactly that sample) and returns the replies in client order (so
the float sums are taken in the order pwfl takes them).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from pwfl import training
from pwfl.aggregation import flower_fedavg
from pwfl.apps.client_app import make_client_app
from pwfl.apps.server_app import load_weights
from pwfl.apps.settings import train_settings
from pwfl.config import load_config
from pwfl.data import server_test_data
from pwfl.inline import InlineGrid
from pwfl.partition import sample_clients
from pwfl.runner import run_experiment
from pwfl.seeding import rng_for

from .conftest import CONFIGS

# The CNN has batch norm, so the integer counters go through Flower's float maths
# too; 6 clients of which 3 are sampled per round, so sampling matters.
OVERRIDES = [
    "simulation.backend=inline",
    "strategy.name=fedavg",
    "model.name=cnn",
    "train.lr=0.02",
    "data.num_clients=6",
    "strategy.fraction_train=0.5",
    "strategy.num_rounds=2",
    "strategy.fraction_evaluate=0",
    # 200 resampled examples per client: equal arrays at any size, learning in two rounds.
    "data.partitioner=resample",
    "data.examples_per_client=200",
]


class SeededSampleGrid(Grid):
    """A grid that lists only the round's seeded sample of nodes and orders replies by client."""

    def __init__(self, inner: InlineGrid, cfg):
        self.inner, self.cfg = inner, cfg
        self.round = 0  # training rounds sent so far

    def set_run(self, run) -> None:
        self.inner.set_run(run)

    @property
    def run(self):
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        s = self.cfg.strategy
        everyone = range(self.cfg.data.num_clients)
        rng = rng_for(self.cfg.seed, "sample", self.round + 1)
        sample = sample_clients(everyone, s.fraction_train, s.min_train_nodes, rng)
        return [client + 1 for client in sample]  # InlineGrid: node i + 1 holds partition i

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None) -> Iterable[Message]:
        messages = list(messages)
        if any(m.metadata.message_type == MessageType.TRAIN for m in messages):
            self.round += 1
        replies = self.inner.send_and_receive(messages, timeout=timeout)
        return sorted(replies, key=lambda r: r.metadata.src_node_id)


def test_engine_fedavg_equals_flowers_fedavg_loop_bit_for_bit(tmp_path):
    cfg = load_config(CONFIGS / "tiny.toml", OVERRIDES)
    run_experiment(cfg, tmp_path / "engine", quiet=True)
    engine_rounds = pd.read_csv(tmp_path / "engine" / "rounds.csv")
    engine_weights = load_weights(tmp_path / "engine" / "final_weights.npz")["0"]

    settings = train_settings(cfg)
    test = server_test_data(cfg.data, cfg.seed)
    accuracies: dict[int, float] = {}

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        state = {k: torch.tensor(v.numpy()) for k, v in arrays.items()}
        metrics = training.evaluate(state, test, settings)
        accuracies[server_round] = metrics["accuracy"]
        return MetricRecord(metrics)

    inline = InlineGrid(make_client_app(cfg), cfg.data.num_clients)
    try:
        result = FedAvg(
            fraction_train=1.0,  # the grid already lists only the seeded sample
            fraction_evaluate=0.0,
            min_train_nodes=1,
            min_available_nodes=1,
        ).start(
            SeededSampleGrid(inline, cfg),
            ArrayRecord(training.initial_state(settings, cfg.seed)),
            num_rounds=cfg.strategy.num_rounds,
            train_config=ConfigRecord({"weight-set": 0}),
            evaluate_fn=central_evaluate,
        )
    finally:
        inline.shutdown()

    flower_weights = {k: v.numpy() for k, v in result.arrays.items()}
    assert list(flower_weights) == list(engine_weights)
    for name, value in flower_weights.items():
        assert value.dtype == engine_weights[name].dtype, name
        np.testing.assert_array_equal(engine_weights[name], value, err_msg=name)
    assert engine_rounds["accuracy"].tolist() == [accuracies[r] for r in (1, 2)]
    # The model learnt: the equality is not that of two untouched initialisations.
    assert accuracies[2] > accuracies[0] + 0.2


def test_flower_fedavg_decodes_each_update_once(monkeypatch):
    """The updates reach Flower's aggregation already decoded: the only arrays NumPy
    deserialises are those of the aggregate (the serialised round trip is exact, so the
    weights are those of ``aggregate_arrayrecords`` on the replies' own records)."""
    rng = np.random.default_rng(0)
    updates = [({"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}, n) for n in (2.0, 5.0)]
    loads = []
    real = Array.numpy

    def counted(self):
        loads.append(self)
        return real(self)

    monkeypatch.setattr(Array, "numpy", counted)
    merged = flower_fedavg(updates)
    assert len(loads) == len(merged) == 2
    monkeypatch.undo()
    records = [
        RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in a.items()}),
                "metrics": MetricRecord({"num-examples": n}),
            }
        )
        for a, n in updates
    ]
    reference = aggregate_arrayrecords(records, "num-examples")
    for name, value in reference.items():
        np.testing.assert_array_equal(merged[name], value.numpy(), strict=True)

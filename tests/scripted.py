"""A scripted federation for engine tests: clients that answer at once, with set work.

The ClientApp adds one to every weight it receives and reports the work a test
chose for it: the examples it ran (what the modelled clock prices) and a
measured time (what ``clock.compute = "measured"`` takes). The engine and the
strategies can so be checked against closed forms on the simulated clock in
milliseconds, without PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pwfl.aggregation import make_executor
from pwfl.callbacks import RoundRecord
from pwfl.config import Config
from pwfl.devices import make_profiles
from pwfl.engine import Engine, EvaluateFn, RunResult, SetModel, connect
from pwfl.inline import InlineGrid
from pwfl.population import Population
from pwfl.runner import simulation_nodes
from pwfl.strategies import build_policy
from pwfl.transport import ARRAYS, CLIENT, CONFIG, METRICS, WEIGHT_KEY, each_client, to_record

EXAMPLES = 10

FAST_LINKS = [
    "clients.up_mbps=inf",
    "clients.down_mbps=inf",
    "clients.latency_ms=0",
    "server.up_mbps=inf",
    "server.down_mbps=inf",
]
"""Links that take no time: a scripted run's clock is the clients' scripted compute."""


def scripted_app(
    compute_s: Callable[[int, int], float],
    examples: Callable[[int, int], int] = lambda client, server_round: EXAMPLES,
    loss: Callable[[int, int], float] = lambda client, server_round: 1.0,
    step: Callable[[int, int], float] = lambda client, server_round: 1.0,
) -> ClientApp:
    """A ClientApp whose client ``c`` reports ``compute_s(c, round)`` measured seconds,
    ``examples(c, round)`` examples run and the loss ``loss(c, round)`` in each round,
    and adds ``step(c, round)`` to every weight it receives."""
    app = ClientApp()

    def client_of(content: RecordDict, context: Context) -> int:
        return int(content[CONFIG].get("client-id", context.node_config["partition-id"]))

    @app.query()
    def describe(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        info = ConfigRecord({"partition-id": pid, "num-examples": EXAMPLES})
        return Message(RecordDict({CLIENT: info}), reply_to=msg)

    def train_one(content: RecordDict, context: Context) -> RecordDict:
        client, config = client_of(content, context), content[CONFIG]
        server_round = int(config["server-round"])
        added = np.float32(step(client, server_round))
        arrays = {k: v.numpy() + added for k, v in content[ARRAYS].items()}
        metrics = {
            WEIGHT_KEY: EXAMPLES,
            "examples-run": examples(client, server_round),
            "loss": loss(client, server_round),
            "train-measured-s": compute_s(client, server_round),
        }
        return RecordDict({ARRAYS: to_record(arrays), METRICS: MetricRecord(metrics)})

    def evaluate_one(content: RecordDict, context: Context) -> RecordDict:
        metrics = MetricRecord({WEIGHT_KEY: EXAMPLES, "loss": 1.0, "accuracy": 0.5})
        return RecordDict({METRICS: metrics})

    # Cohort messages (pool binding) are answered client by client, as pwfl's app does.
    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return Message(each_client(msg.content, context, train_one), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        return Message(each_client(msg.content, context, evaluate_one), reply_to=msg)

    return app


class Rows:
    """A callback that keeps every row the engine hands it."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, Any]] = []
        self.clients: list[dict[str, Any]] = []
        self.server: list[dict[str, Any]] = []
        self.ends = 0

    def on_run_start(self, total_rounds: int, done: int) -> None:
        self.expected = total_rounds

    def on_round_end(self, record: RoundRecord) -> None:
        self.rounds += record.rounds
        self.clients += record.clients
        self.server += record.server

    def on_run_end(self) -> None:
        self.ends += 1

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        return pd.DataFrame(self.rounds), pd.DataFrame(self.clients), pd.DataFrame(self.server)


def mean_weight(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """The scripted server evaluation: "accuracy" grows with the weights, so learning is
    visible in the rows; the validation split reads the same."""
    accuracy = float(arrays["w"].mean())
    return {"accuracy": accuracy, "loss": 0.0, "val_accuracy": accuracy, "val_loss": 0.0}


def run_scripted(
    cfg: Config,
    compute_s: Callable[[int, int], float],
    size: int = 1000,
    examples: Callable[[int, int], int] = lambda client, server_round: EXAMPLES,
    flops_per_example: float = 1e9,
    set_evaluate: Sequence[EvaluateFn] = (),
    loss: Callable[[int, int], float] = lambda client, server_round: 1.0,
    step: Callable[[int, int], float] = lambda client, server_round: 1.0,
) -> tuple[Rows, RunResult]:
    """Run ``cfg``'s strategy on the scripted federation; the model is one ``size``-vector
    of float32. On the modelled clock a client's compute is ``examples x
    flops_per_example / (reference_gflops x speed)``; ``loss`` and ``step`` are the
    clients' reported losses and what they add to the weights (:func:`scripted_app`).
    ``set_evaluate`` gives each weight set a server evaluation of its own (default:
    :func:`mean_weight`'s for every set)."""
    grid = InlineGrid(scripted_app(compute_s, examples, loss, step), simulation_nodes(cfg))
    initial = {"w": np.zeros(size, dtype=np.float32)}
    set_models = [SetModel(initial, fn, flops_per_example) for fn in set_evaluate]
    policy = build_policy(cfg)
    executor = make_executor(cfg.strategy.executor, workers=policy.num_weight_sets)
    rows = Rows()
    try:
        nodes = connect(grid, cfg, simulation_nodes(cfg))
        engine = Engine(
            cfg,
            cfg.strategy.name,
            policy,
            grid,
            Population(cfg, lambda client, ws: EXAMPLES),
            nodes,
            mean_weight,
            executor,
            make_profiles(cfg.clients, cfg.data.num_clients, cfg.seed),
            [rows],
            flops_per_example=flops_per_example,
            set_models=set_models,
        )
        result = engine.run(initial)
    finally:
        executor.shutdown()
        grid.shutdown()
    return rows, result

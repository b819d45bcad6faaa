"""Flower's FedAvg, made repeatable and recorded.

Only three things change from ``flwr.serverapp.strategy.FedAvg``: nodes are
sampled from the experiment seed over partition ids (Flower draws from the
unseeded ``random`` module), replies are aggregated in partition-id order (so
float sums do not depend on arrival order), and every reply and round is
passed to the run's callbacks. Aggregation itself is Flower's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from pwfl.callbacks import Callback
from pwfl.clock import concurrent_round, idle_time, round_length
from pwfl.config import Config
from pwfl.partition import sample_clients
from pwfl.seeding import rng_for
from pwfl.strategies.common import METRICS, ClientDirectory, reply_row, to_numpy

EvaluateFn = Callable[[dict], dict[str, float]]


class RecordingFedAvg(FedAvg):
    """Flower's FedAvg with seeded sampling and per-round records."""

    def __init__(
        self,
        cfg: Config,
        directory: ClientDirectory,
        evaluate_weights: EvaluateFn,
        callbacks: Sequence[Callback] = (),
    ):
        s = cfg.strategy
        super().__init__(
            fraction_train=s.fraction_train,
            fraction_evaluate=s.fraction_evaluate,
            min_train_nodes=s.min_train_nodes,
            min_evaluate_nodes=1 if s.fraction_evaluate > 0 else 0,
            min_available_nodes=len(directory.clients),
        )
        self.cfg = cfg
        self.directory = directory
        self.evaluate_weights = evaluate_weights
        self.callbacks = list(callbacks)
        self._clients: list[dict[str, Any]] = []
        self._train_s = 0.0
        self._aggregate_s = 0.0
        self._client_metrics: dict[str, float] = {}
        self._round_started = 0.0
        self._run_started = 0.0
        self._sim_time = 0.0

    def _sample(self, server_round: int, purpose: str, fraction: float, minimum: int) -> list[int]:
        rng = rng_for(self.cfg.seed, purpose, server_round)
        return sample_clients(self.directory.clients, fraction, minimum, rng)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Seeded sample of clients, then Flower's own message construction."""
        if server_round == 1:
            self._run_started = time.perf_counter()
        self._round_started = time.perf_counter()
        self._clients = []
        clients = self._sample(server_round, "sample", self.fraction_train, self.min_train_nodes)
        config["server-round"] = server_round
        config["weight-set"] = 0
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        nodes = [self.directory.node_of[c] for c in clients]
        return self._construct_messages(record, nodes, MessageType.TRAIN)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Record the replies, then aggregate them with Flower's FedAvg in client order."""
        ordered = self._ordered(replies)
        self._record(ordered, "train", server_round)
        ok = [r for r in ordered if not r.has_error()]
        self._train_s = max((float(r.content[METRICS]["train-time-s"]) for r in ok), default=0.0)
        start = time.perf_counter()
        arrays, metrics = super().aggregate_train(server_round, ordered)
        self._aggregate_s = time.perf_counter() - start
        self._train_loss = float(metrics["loss"]) if metrics is not None else float("nan")
        self._num_clients = len(ok)
        self._num_examples = sum(int(r.content[METRICS]["num-examples"]) for r in ok)
        return arrays, metrics

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Seeded sample of evaluating clients."""
        if self.fraction_evaluate == 0.0:
            return []
        clients = self._sample(
            server_round, "sample-evaluate", self.fraction_evaluate, self.min_evaluate_nodes
        )
        config["server-round"] = server_round
        config["weight-set"] = 0
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        nodes = [self.directory.node_of[c] for c in clients]
        return self._construct_messages(record, nodes, MessageType.EVALUATE)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Record the evaluation replies, then Flower's weighted metric mean."""
        ordered = self._ordered(replies)
        self._record(ordered, "evaluate", server_round)
        metrics = super().aggregate_evaluate(server_round, ordered)
        self._client_metrics = dict(metrics) if metrics is not None else {}
        return metrics

    def central_evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower's ``evaluate_fn``: test the global model, then close the round's records."""
        metrics = self.evaluate_weights(to_numpy(arrays))
        if server_round == 0:
            return MetricRecord(metrics)
        now = time.perf_counter()
        timings = concurrent_round([self._train_s], [self._aggregate_s])
        round_sim = round_length(timings)
        self._sim_time += round_sim
        row = {
            "round": server_round,
            "weight_set": "0",
            "accuracy": metrics["accuracy"],
            "loss": metrics["loss"],
            "client_accuracy": self._client_metrics.get("accuracy", float("nan")),
            "client_loss": self._client_metrics.get("loss", float("nan")),
            "train_loss": self._train_loss,
            "num_clients": self._num_clients,
            "num_examples": self._num_examples,
            "train_s": self._train_s,
            "aggregate_s": self._aggregate_s,
            "round_wall_s": now - self._round_started,
            "wall_time_s": now - self._run_started,
            "round_sim_s": round_sim,
            "sim_time_s": self._sim_time,
            "idle_s": idle_time(timings),
        }
        for callback in self.callbacks:
            callback.on_round_end(server_round, [row], self._clients)
        self._client_metrics = {}
        return MetricRecord(metrics)

    def _ordered(self, replies: Iterable[Message]) -> list[Message]:
        # Aggregating in partition-id order makes the float sums, and so the
        # run, independent of the order in which replies happened to arrive.
        return sorted(replies, key=lambda r: self.directory.partition_of(r.metadata.src_node_id))

    def _record(self, replies: list[Message], phase: str, server_round: int) -> None:
        for reply in replies:
            pid = self.directory.partition_of(reply.metadata.src_node_id)
            self._clients.append(reply_row(reply, pid, 0, phase, server_round))

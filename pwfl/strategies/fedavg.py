"""Flower's FedAvg, made repeatable and recorded.

What changes from ``flwr.serverapp.strategy.FedAvg``: nodes are sampled from
the experiment seed over partition ids (Flower draws from the unseeded
``random`` module), each client may get its own local epochs (load
balancing), replies are priced on the simulated clock and aggregated in
partition-id order (so float sums do not depend on arrival order), and every
round is passed to the run's callbacks. Aggregation itself is Flower's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords, aggregate_metricrecords

from pwfl.callbacks import Callback, RoundRecord
from pwfl.checkpoint import Checkpoint
from pwfl.clock import ClientProfile, concurrent_round, idle_time, round_length
from pwfl.config import Config
from pwfl.partition import sample_clients
from pwfl.quorum import OK, QUORUM_MISSED, QuorumWatch, has_quorum
from pwfl.seeding import rng_for
from pwfl.stragglers import StragglerTracker
from pwfl.strategies.common import (
    ARRAYS,
    METRICS,
    ClientDirectory,
    available_clients,
    group_messages,
    progress_state,
    restore_progress,
    retry_failed,
    to_numpy,
    to_record,
    train_update,
)
from pwfl.strategies.ledger import Ledger, bytes_moved, on_clock

EvaluateFn = Callable[[dict], dict[str, float]]


class RecordingFedAvg(FedAvg):
    """Flower's FedAvg with seeded sampling, the simulated clock and per-round records.

    Failed training replies are retried within the round, a round with too few
    replies keeps the old weights (as Flower does) and is recorded as
    ``quorum_missed``. Flower's loop always counts rounds from 1, so a resumed
    run adds ``round_offset`` (the checkpoint's round) to the round Flower passes.
    """

    def __init__(
        self,
        cfg: Config,
        directory: ClientDirectory,
        evaluate_weights: EvaluateFn,
        profiles: dict[int, ClientProfile],
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
        self.tracker = StragglerTracker(cfg.stragglers, cfg.train.local_epochs)
        self.ledger = Ledger(directory, profiles, self.tracker, cfg.stragglers.deadline_s)
        self.watch = QuorumWatch(cfg.faults.max_missed_rounds)
        self.round_offset = 0
        self.checkpoint_round = 0 if cfg.checkpoint.every > 0 else -1
        self.current: dict[str, np.ndarray] = {}
        """The global weights after the latest round (saved in checkpoints)."""
        self._grid: Grid | None = None
        self._deadline = 0.0
        self._status = OK
        self._num_sent = 0
        self._record = RoundRecord(0)
        self._pending: list[Message] = []
        self._sent_arrays: dict = {}
        self._train_s = 0.0
        self._aggregate_s = 0.0
        self._train_loss = float("nan")
        self._client_metrics: dict[str, float] = {}
        self._eval_rows: list[dict] = []
        self._num_clients = 0
        self._num_examples = 0
        self._round_started = 0.0
        self._run_started = 0.0
        self._wall_before = 0.0  # host seconds spent before a resume
        self._sim_time = 0.0

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Seeded sample of the clients online this round, one message each."""
        server_round += self.round_offset
        if server_round == self.round_offset + 1:
            self._run_started = time.perf_counter() - self._wall_before
        self._round_started = time.perf_counter()
        self._grid = grid
        self._deadline = time.monotonic() + self.cfg.faults.round_timeout_s
        self._record = RoundRecord(server_round)
        online = available_clients(self.directory.clients, self.cfg, server_round)
        rng = rng_for(self.cfg.seed, "sample", server_round)
        clients = sample_clients(online, self.fraction_train, self.min_train_nodes, rng)
        config = {
            **config,
            "server-round": server_round,
            "weight-set": 0,
            "checkpoint-round": self.checkpoint_round,
        }
        self._sent_arrays = to_numpy(arrays)
        self._pending = group_messages(
            self.directory, clients, arrays, config, MessageType.TRAIN, self.tracker.epochs_for
        )
        return self._pending

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Retry failed replies, price and record them, then aggregate with Flower's FedAvg."""
        server_round += self.round_offset
        assert self._grid is not None, "configure_train runs first"
        replies, sent = retry_failed(
            self._grid, self._pending, list(replies), self._deadline, self.cfg.faults.max_retries
        )
        self.ledger.remember(sent)  # pushed by Flower's loop: ids exist now
        settled = self.ledger.settle(replies, "train", server_round)
        accepted = settled.accepted.get(0, [])
        self._train_s = settled.group_s.get(0, 0.0)
        self._record.clients = settled.rows
        self._num_sent = settled.sent.get(0, len(self._pending))
        self._status = (
            OK
            if has_quorum(self.cfg.faults.quorum, self._num_sent, len(accepted))
            else QUORUM_MISSED
        )
        start = time.perf_counter()
        if self._status == QUORUM_MISSED:  # Flower's loop keeps the old weights on None
            arrays, metrics = None, None
        elif self.cfg.comm.compression == "none":
            arrays, metrics = super().aggregate_train(server_round, accepted)
        else:
            arrays, metrics = self._aggregate_compressed(accepted)
        self._aggregate_s = time.perf_counter() - start
        self._train_loss = float(metrics["loss"]) if metrics is not None else float("nan")
        self._num_clients = len(accepted)
        self._num_examples = sum(int(r.content[METRICS]["num-examples"]) for r in accepted)
        return arrays, metrics

    def _aggregate_compressed(
        self, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        # Flower's FedAvg would average the 8-bit codes; decode each reply first,
        # then aggregate with the same Flower helpers its aggregate_train uses.
        if not replies:
            return None, None
        contents = [
            RecordDict(
                {
                    ARRAYS: to_record(
                        train_update(r, self._sent_arrays, self.cfg.comm.compression)[0]
                    ),
                    METRICS: r.content[METRICS],
                }
            )
            for r in replies
        ]
        return (
            aggregate_arrayrecords(contents, self.weighted_by_key),
            aggregate_metricrecords(contents, self.weighted_by_key),
        )

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Seeded sample of evaluating clients."""
        server_round += self.round_offset
        self._pending = []
        if self.fraction_evaluate == 0.0:
            return []
        rng = rng_for(self.cfg.seed, "sample-evaluate", server_round)
        clients = sample_clients(
            self.directory.clients, self.fraction_evaluate, self.min_evaluate_nodes, rng
        )
        config = {**config, "server-round": server_round, "weight-set": 0}
        self._pending = group_messages(
            self.directory, clients, arrays, config, MessageType.EVALUATE
        )
        return self._pending

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Record the evaluation replies, then Flower's weighted metric mean."""
        server_round += self.round_offset
        self.ledger.remember(self._pending)
        settled = self.ledger.settle(replies, "evaluate", server_round)
        self._eval_rows = settled.rows
        metrics = super().aggregate_evaluate(server_round, settled.accepted.get(0, []))
        self._client_metrics = dict(metrics) if metrics is not None else {}
        return metrics

    def central_evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Flower's ``evaluate_fn``: test the global model, then close the round's records."""
        self.current = to_numpy(arrays)
        metrics = self.evaluate_weights(self.current)
        if server_round == 0:
            return MetricRecord(metrics)
        server_round += self.round_offset
        now = time.perf_counter()
        self._wall_before = now - self._run_started
        timings = concurrent_round([self._train_s], [self._aggregate_s])
        round_start = self._sim_time
        round_sim = round_length(timings)
        self._sim_time += round_sim
        record = self._record
        record.clients = on_clock(record.clients, round_start) + self._eval_rows
        busy = round_start + self._train_s
        record.server = (
            [
                {
                    "round": server_round,
                    "weight_set": 0,
                    "busy_start_s": busy,
                    "busy_end_s": busy + self._aggregate_s,
                }
            ]
            if self._status == OK
            else []
        )
        record.rounds = [
            {
                "round": server_round,
                "weight_set": "0",
                "status": self._status,
                "accuracy": metrics["accuracy"],
                "loss": metrics["loss"],
                "client_accuracy": self._client_metrics.get("accuracy", float("nan")),
                "client_loss": self._client_metrics.get("loss", float("nan")),
                "train_loss": self._train_loss,
                "num_clients": self._num_clients,
                "num_sent": self._num_sent,
                "num_examples": self._num_examples,
                "train_s": self._train_s,
                "aggregate_s": self._aggregate_s,
                "group_start_s": 0.0,
                "group_end_s": timings[0].end_s,
                "round_wall_s": now - self._round_started,
                "wall_time_s": now - self._run_started,
                "round_sim_s": round_sim,
                "sim_time_s": self._sim_time,
                "idle_s": idle_time(timings),
                **bytes_moved(record.clients),
            }
        ]
        self.watch.observe([self._status])
        for callback in self.callbacks:
            callback.on_round_end(record)
        self.watch.stop_if_lost(server_round)
        self._client_metrics, self._eval_rows = {}, []
        return MetricRecord(metrics)

    def checkpoint_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The global weights, clocks, quorum streak and straggler estimates."""
        state = progress_state(self._sim_time, self._wall_before, self.watch, self.tracker)
        return state, {f"weights/0/{k}": v for k, v in self.current.items()}

    def restore(self, ckpt: Checkpoint) -> ArrayRecord:
        """Continue from ``ckpt``; return the global weights to start Flower's loop from."""
        self._sim_time, self._wall_before = restore_progress(
            ckpt.strategy, self.watch, self.tracker
        )
        self.round_offset = self.checkpoint_round = ckpt.round
        prefix = "weights/0/"
        self.current = {k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)}
        return to_record(self.current)

"""Parallel-weight federated learning: K global weight sets trained at once on disjoint groups.

Each round the server samples clients, splits them into K disjoint groups
(for K=2 a random subset S and its complement S'), sends group k the weight
set k in one push, so all K groups train at the same time, and aggregates the
K groups concurrently on an executor (Ray tasks by default). With K=1 and no
merging this is FedAvg, step for step.

``SequentialPWFL`` is the baseline the idea is measured against: the same K
weight sets and the same client split, but group k+1 is sent only after
group k has been aggregated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from pwfl.aggregation import AggregateFn, Arrays, Executor, Timed, mean_of_weight_sets
from pwfl.callbacks import Callback, RoundRecord
from pwfl.checkpoint import Checkpoint
from pwfl.clock import (
    ClientProfile,
    GroupTiming,
    concurrent_round,
    idle_time,
    round_length,
    sequential_round,
)
from pwfl.config import Config, parse_merge
from pwfl.partition import sample_clients, split_clients, split_complementary
from pwfl.quorum import OK, QUORUM_MISSED, QuorumWatch, has_quorum
from pwfl.seeding import rng_for
from pwfl.stragglers import StragglerTracker
from pwfl.strategies.common import (
    METRICS,
    WEIGHT_KEY,
    ClientDirectory,
    available_clients,
    group_messages,
    progress_state,
    restore_progress,
    send_with_retries,
    to_record,
    train_update,
)
from pwfl.strategies.ledger import Ledger, Settled, bytes_moved, on_clock
from pwfl.strategies.server_optimizer import ServerOptimizer

EvaluateFn = Callable[[Arrays], dict[str, float]]
MERGED = "merged"


@dataclass
class WeightSet:
    """One of the K global models: its id, its weights, and its accuracy history."""

    id: int
    arrays: Arrays
    rounds_trained: int = 0
    history: list[float] = field(default_factory=list)


@dataclass
class GroupOutcome:
    """What one group did in one round."""

    weight_set: int
    clients: list[int]
    replies: list[Message] = field(default_factory=list)
    status: str = OK
    """ok, or quorum_missed when too few replies counted to aggregate."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    train_s: float = 0.0
    aggregate_s: float = 0.0


class PWFL(Strategy):
    """K weight sets, K disjoint client groups per round, trained concurrently.

    Parameters
    ----------
    cfg
        The experiment; ``cfg.strategy`` holds k, the group policy, the merge
        policy and the sampling fractions.
    directory
        The connected clients (partition id -> node id, example counts).
    evaluate_weights
        Server-side evaluation of one weight set on the held-out test set.
    executor
        Where the K group aggregations run (Ray tasks, threads, or serially).
    aggregate_fn
        Client updates -> one weight set; the same function for every group.
    profiles
        Each client's simulated device and link.
    callbacks
        Receive each round's records (CSV writer, progress bar).
    """

    def __init__(
        self,
        cfg: Config,
        directory: ClientDirectory,
        evaluate_weights: EvaluateFn,
        executor: Executor,
        aggregate_fn: AggregateFn,
        profiles: dict[int, ClientProfile],
        callbacks: Sequence[Callback] = (),
    ):
        self.cfg = cfg
        self.k = cfg.strategy.k
        self.directory = directory
        self.evaluate_weights = evaluate_weights
        self.executor = executor
        self.aggregate_fn = Timed(aggregate_fn)
        self.callbacks = list(callbacks)
        self.merge_kind, self.merge_every = parse_merge(cfg.strategy.merge)
        self.tracker = StragglerTracker(cfg.stragglers, cfg.train.local_epochs)
        self.ledger = Ledger(directory, profiles, self.tracker, cfg.stragglers.deadline_s)
        self.optimizers = (
            [ServerOptimizer(cfg.strategy) for _ in range(self.k)]
            if cfg.strategy.server_opt != "none"
            else []
        )
        self.weight_sets: list[WeightSet] = []
        self.watch = QuorumWatch(cfg.faults.max_missed_rounds)
        self.resume: Checkpoint | None = None
        """Set before ``start`` to continue a run from its checkpoint."""
        self.checkpoint_round = (
            0 if cfg.checkpoint.every > 0 and cfg.strategy.mode == "sync" else -1
        )
        """The round of the newest checkpoint, -1 when none are written (clients
        prune the state files that no checkpoint can need)."""
        self._sim_time = 0.0
        self._wall_before = 0.0  # host seconds spent before a resume
        self._groups: list[list[int]] = []
        self._outcomes: dict[int, GroupOutcome] = {}
        self._client_metrics: dict[int, dict[str, float]] = {}
        self._eval_rows: list[dict[str, Any]] = []

    # --- Flower's strategy hooks -------------------------------------------------

    def summary(self) -> None:
        """Nothing to log: the run's config is written next to its records."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Messages for every group of the round, group k carrying weight set k.

        ``arrays`` is not used: each group receives its own weight set.
        """
        return self._train_messages(server_round, list(range(self.k)), config)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate every group's replies concurrently; return weight set 0."""
        settled = self.ledger.settle(replies, "train", server_round)
        self._aggregate_groups(list(range(self.k)), settled)
        return to_record(self.weight_sets[0].arrays), None

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """A seeded sample of evaluating clients, split K ways, one weight set each."""
        s = self.cfg.strategy
        if s.fraction_evaluate == 0:
            return []
        rng = rng_for(self.cfg.seed, "sample-evaluate", server_round)
        clients = sample_clients(self.directory.clients, s.fraction_evaluate, 1, rng)
        if len(clients) < self.k:
            return []
        split_rng = rng_for(self.cfg.seed, "split-evaluate", server_round)
        groups = split_complementary(clients, self.k, split_rng)
        messages: list[Message] = []
        for ws, group in enumerate(groups):
            cfg = {**config, "server-round": server_round, "weight-set": ws}
            record = to_record(self.weight_sets[ws].arrays)
            messages += group_messages(self.directory, group, record, cfg, MessageType.EVALUATE)
        return messages

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Weighted mean of the clients' metrics per weight set (Flower's helper)."""
        settled = self.ledger.settle(replies, "evaluate", server_round)
        self._eval_rows = settled.rows
        ok = {ws: [r.content for r in rs] for ws, rs in settled.accepted.items() if rs}
        self._client_metrics = {
            ws: dict(aggregate_metricrecords(contents, WEIGHT_KEY)) for ws, contents in ok.items()
        }
        everything = [c for contents in ok.values() for c in contents]
        return aggregate_metricrecords(everything, WEIGHT_KEY) if everything else None

    # --- The round loop ----------------------------------------------------------

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float | None = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Run ``num_rounds`` PWFL rounds; every weight set starts from ``initial_arrays``.

        PWFL owns this loop because Flower's ``start`` holds one global model.
        Records go to the callbacks; ``evaluate_fn`` is not used (each weight
        set is evaluated with ``evaluate_weights``).
        """
        initial = {name: a.numpy() for name, a in initial_arrays.items()}
        self.weight_sets = [WeightSet(i, dict(initial)) for i in range(self.k)]
        first_round = 1
        if self.resume is not None:
            self.restore(self.resume)
            first_round = self.resume.round + 1
        train_config = train_config or ConfigRecord()
        evaluate_config = evaluate_config or ConfigRecord()
        run_started = time.perf_counter() - self._wall_before
        for server_round in range(first_round, num_rounds + 1):
            round_started = time.perf_counter()
            self._groups = self.plan_groups(server_round)

            timings = self._train_round(grid, server_round, train_config, timeout)
            replies = self._exchange(
                grid,
                self.configure_evaluate(server_round, initial_arrays, evaluate_config, grid),
                timeout,
            )
            self.aggregate_evaluate(server_round, replies)
            record = RoundRecord(server_round, rounds=self._weight_set_rows(server_round, timings))
            # Merging comes last: the rows above describe each set's own model,
            # the merged row the average, and the next round starts from it.
            merged = self._merge(server_round, num_rounds)
            if merged is not None:
                metrics = self.evaluate_weights(merged)
                record.rounds.append(
                    {"round": server_round, "weight_set": MERGED, **_test_metrics(metrics)}
                )
            record.clients, record.server = self._timeline(server_round, timings, self._sim_time)

            round_sim = round_length(timings)
            self._sim_time += round_sim
            now = time.perf_counter()
            self._wall_before = now - run_started
            clock = {
                "round_wall_s": now - round_started,
                "wall_time_s": now - run_started,
                "round_sim_s": round_sim,
                "sim_time_s": self._sim_time,
                "idle_s": idle_time(timings),
            }
            record.rounds = [{**row, **clock} for row in record.rounds]
            self.watch.observe([o.status for o in self._outcomes.values()])
            for callback in self.callbacks:
                callback.on_round_end(record)
            self.watch.stop_if_lost(server_round)
        result = Result()
        result.arrays = to_record(self.weight_sets[0].arrays)
        return result

    def plan_groups(self, server_round: int) -> list[list[int]]:
        """Sample this round's available clients and split them into K disjoint groups."""
        s = self.cfg.strategy
        online = available_clients(self.directory.clients, self.cfg, server_round)
        sampled = sample_clients(
            online,
            s.fraction_train,
            s.min_train_nodes,
            rng_for(self.cfg.seed, "sample", server_round),
        )
        return split_clients(
            s.group_policy,
            sampled,
            self.k,
            rng_for(self.cfg.seed, "split", server_round),
            self.directory.sizes,
        )

    def _train_round(
        self, grid: Grid, server_round: int, config: ConfigRecord, timeout: float | None
    ) -> list[GroupTiming]:
        """All K groups in one push, then all K aggregations at once."""
        self._outcomes = {}
        messages = self.configure_train(server_round, to_record({}), config, grid)
        self.aggregate_train(server_round, self._exchange(grid, messages, timeout, retry=True))
        return concurrent_round(*self._group_times())

    def _group_times(self) -> tuple[list[float], list[float]]:
        outcomes = [self._outcomes[ws] for ws in range(self.k)]
        return [o.train_s for o in outcomes], [o.aggregate_s for o in outcomes]

    def _train_messages(
        self, server_round: int, weight_sets: list[int], config: ConfigRecord
    ) -> list[Message]:
        messages: list[Message] = []
        for ws in weight_sets:
            self._outcomes[ws] = GroupOutcome(ws, list(self._groups[ws]))
            cfg = {
                **config,
                "server-round": server_round,
                "weight-set": ws,
                "checkpoint-round": self.checkpoint_round,
            }
            record = to_record(self.weight_sets[ws].arrays)
            messages += group_messages(
                self.directory,
                self._groups[ws],
                record,
                cfg,
                MessageType.TRAIN,
                epochs=self.tracker.epochs_for,
            )
        return messages

    def _aggregate_groups(self, weight_sets: list[int], settled: Settled) -> None:
        """Aggregate the groups' accepted replies concurrently, those with a quorum."""
        handles = {}
        for ws in weight_sets:
            outcome = self._outcomes[ws]
            outcome.replies = settled.accepted.get(ws, [])
            outcome.rows = [r for r in settled.rows if r["weight_set"] == ws]
            outcome.train_s = settled.group_s.get(ws, 0.0)
            sent = settled.sent.get(ws, len(outcome.clients))
            if not has_quorum(self.cfg.faults.quorum, sent, len(outcome.replies)):
                outcome.status = QUORUM_MISSED  # the set keeps its weights this round
            else:
                sent = self.weight_sets[ws].arrays
                mode = self.cfg.comm.compression
                updates = [train_update(r, sent, mode) for r in outcome.replies]
                handles[ws] = self.executor.submit(self.aggregate_fn, updates)
        for ws, handle in handles.items():  # every group is running before we wait on one
            arrays, seconds = handle.result()
            self.weight_sets[ws].arrays = self._optimizer_step(ws, arrays)
            self.weight_sets[ws].rounds_trained += 1
            self._outcomes[ws].aggregate_s = seconds

    def _optimizer_step(self, ws: int, aggregated: Arrays) -> Arrays:
        """Apply the weight set's server optimiser, if any, to its new aggregate."""
        if not self.optimizers:
            return aggregated
        current = self.weight_sets[ws]
        return self.optimizers[ws].step(current.rounds_trained + 1, current.arrays, aggregated)

    def _exchange(
        self, grid: Grid, messages: Iterable[Message], timeout: float | None, retry: bool = False
    ) -> list[Message]:
        """Push messages, wait for the replies (retrying errors when ``retry``), and let
        the ledger note every message sent."""
        retries = self.cfg.faults.max_retries if retry else 0
        replies, sent = send_with_retries(grid, list(messages), timeout, retries)
        self.ledger.remember(sent)
        return replies

    def _merge(self, server_round: int, num_rounds: int) -> Arrays | None:
        """Apply the merge policy; return the merged weights when a merge happened."""
        due = (self.merge_kind == "every" and server_round % self.merge_every == 0) or (
            self.merge_kind == "final" and server_round == num_rounds
        )
        if not due:
            return None
        merged = mean_of_weight_sets([ws.arrays for ws in self.weight_sets])
        if self.merge_kind == "every":
            for ws in self.weight_sets:
                ws.arrays = {k: v.copy() for k, v in merged.items()}
        return merged

    def _weight_set_rows(
        self, server_round: int, timings: list[GroupTiming]
    ) -> list[dict[str, Any]]:
        """Evaluate every weight set on the test set; one ``rounds.csv`` row each."""
        rows = []
        for ws, timing in zip(self.weight_sets, timings, strict=True):
            outcome = self._outcomes[ws.id]
            metrics = self.evaluate_weights(ws.arrays)
            ws.history.append(metrics["accuracy"])
            client = self._client_metrics.get(ws.id, {})
            rows.append(
                {
                    "round": server_round,
                    "weight_set": str(ws.id),
                    "status": outcome.status,
                    **_test_metrics(metrics),
                    "client_accuracy": client.get("accuracy", np.nan),
                    "client_loss": client.get("loss", np.nan),
                    "train_loss": _weighted_loss(outcome.replies),
                    "num_clients": len(outcome.replies),
                    "num_sent": len(outcome.clients),
                    "num_examples": sum(
                        int(r.content[METRICS][WEIGHT_KEY]) for r in outcome.replies
                    ),
                    "train_s": timing.train_s,
                    "aggregate_s": timing.aggregate_s,
                    "group_start_s": timing.start_s,
                    "group_end_s": timing.end_s,
                    **bytes_moved(outcome.rows),
                }
            )
        return rows

    def _timeline(
        self, server_round: int, timings: list[GroupTiming], round_start: float
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Client rows with absolute simulated times, and the server's busy intervals."""
        clients, server = [], []
        for ws, timing in enumerate(timings):
            start = round_start + timing.start_s
            clients += on_clock(self._outcomes[ws].rows, start)
            if self._outcomes[ws].status == OK and self._outcomes[ws].replies:
                busy = start + timing.train_s
                server.append(
                    {
                        "round": server_round,
                        "weight_set": ws,
                        "busy_start_s": busy,
                        "busy_end_s": busy + timing.aggregate_s,
                    }
                )
        return clients + self._eval_rows, server

    # --- Checkpoints ----------------------------------------------------------------

    def checkpoint_state(self) -> tuple[dict[str, Any], Arrays]:
        """Everything beyond the seed and the round that the next rounds depend on."""
        state = {
            **progress_state(self._sim_time, self._wall_before, self.watch, self.tracker),
            "weight_sets": [
                {"rounds_trained": ws.rounds_trained, "history": ws.history}
                for ws in self.weight_sets
            ],
        }
        arrays = {
            f"weights/{ws.id}/{name}": value
            for ws in self.weight_sets
            for name, value in ws.arrays.items()
        }
        for i, optimizer in enumerate(self.optimizers):
            arrays.update({f"optimizer/{i}/{k}": v for k, v in optimizer.state().items()})
        return state, arrays

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weight sets, optimisers, clocks, straggler estimates."""
        state = ckpt.strategy
        self._sim_time, self._wall_before = restore_progress(state, self.watch, self.tracker)
        self.checkpoint_round = ckpt.round
        for ws in self.weight_sets:
            prefix = f"weights/{ws.id}/"
            ws.arrays = {
                k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)
            }
            saved = state["weight_sets"][ws.id]
            ws.rounds_trained, ws.history = int(saved["rounds_trained"]), list(saved["history"])
        for i, optimizer in enumerate(self.optimizers):
            prefix = f"optimizer/{i}/"
            optimizer.load_state(
                {k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)}
            )


class SequentialPWFL(PWFL):
    """The same K weight sets and client split, trained one group after another."""

    def _train_round(
        self, grid: Grid, server_round: int, config: ConfigRecord, timeout: float | None
    ) -> list[GroupTiming]:
        """Group k+1 is sent only after group k has been aggregated."""
        self._outcomes = {}
        for ws in range(self.k):
            messages = self._train_messages(server_round, [ws], config)
            replies = self._exchange(grid, messages, timeout, retry=True)
            self._aggregate_groups([ws], self.ledger.settle(replies, "train", server_round))
        return sequential_round(*self._group_times())


def _test_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def _weighted_loss(replies: list[Message]) -> float:
    total = sum(float(r.content[METRICS][WEIGHT_KEY]) for r in replies)
    if not total:
        return float("nan")
    weighted = sum(
        float(r.content[METRICS]["loss"]) * float(r.content[METRICS][WEIGHT_KEY]) for r in replies
    )
    return weighted / total

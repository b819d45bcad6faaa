"""The round engine: the one loop every strategy runs in.

The engine owns everything a round does: it sends the jobs a policy plans
(a *job* is one weight set sent to one group of clients), collects their
replies and retries the failed ones, prices them on the simulated clock,
applies the quorum rule, aggregates each group on the executor as soon as its
own replies are in, applies the server optimiser, evaluates the weight sets,
advances the clocks, builds the records and calls the callbacks. Strategies
(:mod:`pwfl.strategies`) are policies it asks what to send and when a round
ends; ``fedavg``, ``pwfl``, ``pwfl-sequential``, async PWFL and FedBuff are
policies of this one loop.

The loop is a conservative discrete-event simulation on the simulated clock.
Jobs are pushed as soon as they are planned and replies are pulled as they come
(on the host, groups train and aggregate concurrently), but a finished job is
*processed* (its update applied, its clients released, the policy told) only
when no job still in flight could end before it on the simulated clock. So the
order of events, and every choice a policy makes from them, follows simulated
time, not the order in which this host happened to run the clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from pwfl.aggregation import Arrays, Executor, Handle, Timed
from pwfl.callbacks import Callback, RoundRecord
from pwfl.checkpoint import Checkpoint
from pwfl.clock import ClientProfile, busy_time
from pwfl.config import Config
from pwfl.ledger import Ledger, Settled, bytes_moved, on_clock
from pwfl.partition import sample_clients, split_complementary
from pwfl.quorum import OK, QUORUM_MISSED, QuorumLost, QuorumWatch, has_quorum
from pwfl.schema import CLIENTS, MERGED, ROUNDS, SERVER
from pwfl.seeding import rng_for
from pwfl.stragglers import StragglerTracker
from pwfl.strategies.base import Finished, Plan, Policy, RoundEnd
from pwfl.strategies.server_optimizer import ServerOptimizer
from pwfl.transport import (
    CLIENT,
    METRICS,
    WEIGHT_KEY,
    ClientDirectory,
    group_messages,
    retry_for,
    to_record,
    train_update,
)

POLL_S = 0.02  # host seconds between two pulls of the replies

EvaluateFn = Callable[[Arrays], dict[str, float]]


@dataclass
class WeightSet:
    """One global model: its weights, the updates it received, its accuracy history."""

    id: int
    arrays: Arrays
    rounds_trained: int = 0
    history: list[float] = field(default_factory=list)


@dataclass
class Job:
    """A planned job on its way: its messages, replies and, once settled, its outcome."""

    plan: Plan
    sent: Arrays
    version: int
    ledger: Ledger
    deadline: float
    """Host ``time.monotonic()`` after which missing replies count as timeouts."""
    messages: dict[str, Message] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    replies: list[Message] = field(default_factory=list)
    settled: Settled | None = None
    status: str = OK
    handle: Handle | None = None
    """Its aggregation, started as soon as its replies were in."""

    @property
    def weight_set(self) -> int:
        return self.plan.weight_set

    @property
    def end_s(self) -> float:
        """When its last counted reply reached the server on the simulated clock."""
        assert self.settled is not None
        return self.plan.start_s + self.settled.group_s.get(self.weight_set, 0.0)


@dataclass
class Tally:
    """What one weight set's finished jobs did since its last round of the records."""

    start_s: float = math.inf
    end_s: float = 0.0
    ready_s: float = 0.0
    aggregate_s: float = 0.0
    updated: bool = False
    num_sent: int = 0
    losses: list[tuple[float, float]] = field(default_factory=list)
    clients: list[dict[str, Any]] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class RunResult:
    """What a finished (or stopped) run hands back to its caller."""

    weight_sets: dict[str, Arrays]
    stopped: str = ""
    """Why the run stopped early (empty when it ran all its rounds)."""


def discover_clients(grid: Grid, expected: int, timeout: float) -> ClientDirectory:
    """Ask every connected node for its partition id and example count (a ``query`` round).

    Done once before the first round, so sampling can be seeded over partition
    ids and the ``balanced`` policy knows the clients' sizes.
    """
    deadline = time.time() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.time() > deadline:
            raise RuntimeError(
                f"only {len(node_ids)} of {expected} clients connected within {timeout:.0f} s"
            )
        time.sleep(0.5)
    messages = [
        Message(content=RecordDict(), message_type=MessageType.QUERY, dst_node_id=node)
        for node in node_ids
    ]
    directory = ClientDirectory()
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            continue
        info = reply.content[CLIENT]
        directory.add(
            int(info["partition-id"]), reply.metadata.src_node_id, int(info["num-examples"])
        )
    if not directory.node_of:
        raise RuntimeError("no client answered the discovery query; see the client logs")
    return directory


class Engine:
    """Runs one experiment's rounds for a policy on a Flower grid.

    Parameters
    ----------
    cfg
        The experiment.
    label, policy
        The run's name in the records, and the strategy that plans its jobs.
    grid, directory
        Where messages go, and the connected clients.
    evaluate
        Server-side evaluation of one weight set on the held-out test set.
    executor
        Where aggregations run (threads, Ray tasks or serially).
    profiles
        Each client's simulated device and link.
    callbacks
        Receive each round's records (CSV writer, checkpoints, progress bar).
    statistics
        Names of the model's running statistics (batch norm's means, variances and
        counters), which some strategies treat apart from its parameters.
    """

    def __init__(
        self,
        cfg: Config,
        label: str,
        policy: Policy,
        grid: Grid,
        directory: ClientDirectory,
        evaluate: EvaluateFn,
        executor: Executor,
        profiles: dict[int, ClientProfile],
        callbacks: Sequence[Callback] = (),
        statistics: frozenset[str] = frozenset(),
    ):
        self.cfg = cfg
        self.statistics = statistics
        """Names of the weights that are running statistics, not parameters."""
        self.label = label
        self.policy = policy
        self.grid = grid
        self.directory = directory
        self.evaluate = evaluate
        self.executor = executor
        self.profiles = profiles
        self.callbacks = list(callbacks)
        self.tracker = StragglerTracker(cfg.stragglers, cfg.train.local_epochs)
        self.optimizers = (
            [ServerOptimizer(cfg.strategy) for _ in range(policy.num_weight_sets)]
            if cfg.strategy.server_opt != "none"
            else []
        )
        self.watch = QuorumWatch(cfg.faults.max_missed_rounds, policy.num_weight_sets)
        self.sets: list[WeightSet] = []
        self.checkpoint_round = 0 if cfg.checkpoint.every > 0 and policy.checkpointable else -1
        """The round of the newest checkpoint, -1 when none are written (clients
        prune the state files that no checkpoint can need)."""
        self._aggregate = Timed(policy.aggregator)
        self._jobs: list[Job] = []
        self._job_of: dict[str, Job] = {}
        self._free_at: dict[int, float] = {}
        self._in_use: set[int] = set()
        self._tallies: dict[int, Tally] = {}
        self._sim_time = 0.0
        self._wall_before = 0.0  # host seconds spent before a resume
        self._run_started = 0.0
        self._last_wall: dict[int, float] = {}

    # --- what policies may read -------------------------------------------------------

    @property
    def num_clients(self) -> int:
        return len(self.directory.clients)

    def online(self, server_round: int) -> list[int]:
        """The clients online this round: each is offline with ``clients.offline_prob``.

        Drawn from ``(seed, "offline", round)``, so every strategy of one seed sees
        the same clients go missing. At least ``min_train_nodes`` stay online.
        """
        clients = self.directory.clients
        p = self.cfg.clients.offline_prob
        if p == 0:
            return list(clients)
        draws = rng_for(self.cfg.seed, "offline", server_round).random(len(clients))
        online = [c for c, u in zip(clients, draws, strict=True) if u >= p]
        needed = max(self.cfg.strategy.min_train_nodes, self.policy.num_weight_sets)
        if len(online) < needed:  # keep the round possible: bring back the likeliest
            order = np.argsort(-draws)
            online = sorted(clients[i] for i in order[:needed])
        return online

    def sizes(self) -> dict[int, int]:
        return self.directory.sizes

    def free_clients(self, at_s: float, candidates: Sequence[int]) -> list[int]:
        return [
            c for c in candidates if c not in self._in_use and self._free_at.get(c, 0.0) <= at_s
        ]

    def weights(self, weight_set: int) -> Arrays:
        return self.sets[weight_set].arrays

    def set_weights(self, weight_set: int, arrays: Arrays) -> None:
        self.sets[weight_set].arrays = arrays

    def version(self, weight_set: int) -> int:
        return self.sets[weight_set].rounds_trained

    # --- the loop ---------------------------------------------------------------------

    def run(self, initial: Arrays, resume: Checkpoint | None = None) -> RunResult:
        """Run the policy's rounds from ``initial`` (or from ``resume``'s checkpoint)."""
        self.sets = [WeightSet(i, dict(initial)) for i in range(self.policy.num_weight_sets)]
        if resume is not None:
            self.restore(resume)
        self._run_started = time.perf_counter() - self._wall_before
        for callback in self.callbacks:
            callback.on_run_start(self.policy.records_expected(), resume.round if resume else 0)
        stopped = ""
        try:
            self._launch(self.policy.plan(self))
            while not self.policy.done():
                self._poll()
                job = self._next_job()
                if job is None:
                    if not self._jobs:
                        raise RuntimeError(f"{self.label}: no job in flight and none planned")
                    time.sleep(POLL_S)
                    continue
                self._process(job)
                self._launch(self.policy.plan(self))
        except QuorumLost as err:
            stopped = str(err)
        return RunResult({str(ws.id): ws.arrays for ws in self.sets}, stopped)

    def _launch(self, plans: list[Plan]) -> None:
        """Push every planned job's messages; the clients start training now."""
        for plan in plans:
            ws = self.sets[plan.weight_set]
            config = {
                **self._train_config(),
                "server-round": plan.round,
                "weight-set": plan.weight_set,
                "checkpoint-round": self.checkpoint_round,
            }
            messages = group_messages(
                self.directory,
                list(plan.clients),
                to_record(ws.arrays),
                config,
                MessageType.TRAIN,
                epochs=self.tracker.epochs_for,
            )
            job = Job(
                plan,
                ws.arrays,
                ws.rounds_trained,
                Ledger(self.profiles, self.cfg.stragglers.deadline_s),
                time.monotonic() + self.cfg.faults.round_timeout_s,
            )
            self._push(job, messages)
            self._in_use.update(plan.clients)
            self._jobs.append(job)

    def _push(self, job: Job, messages: list[Message]) -> None:
        ids = list(self.grid.push_messages(messages))
        job.ledger.remember(messages)
        for mid, message in zip(ids, messages, strict=True):
            job.messages[mid] = message
            job.pending.add(mid)
            self._job_of[mid] = job

    def _poll(self) -> None:
        """Pull the replies that are in, retry errors, settle the jobs that are complete."""
        pending = [mid for job in self._jobs for mid in job.pending]
        if pending:
            for reply in self.grid.pull_messages(pending):
                job = self._job_of.pop(reply.metadata.reply_to_message_id)
                job.pending.discard(reply.metadata.reply_to_message_id)
                job.replies.append(reply)
                message = job.messages[reply.metadata.reply_to_message_id]
                retry = retry_for(message, reply, self.cfg.faults.max_retries)
                if retry is not None and time.monotonic() < job.deadline:
                    self._push(job, [retry])
        now = time.monotonic()
        for job in self._jobs:
            if job.settled is None and (not job.pending or now > job.deadline):
                self._settle(job)

    def _settle(self, job: Job) -> None:
        """Price a complete job and, for a group aggregated alone, start its aggregation."""
        for mid in job.pending:
            self._job_of.pop(mid, None)
        job.settled = job.ledger.settle(job.replies, "train", job.plan.round)
        accepted = job.settled.accepted.get(job.weight_set, [])
        sent = job.settled.sent.get(job.weight_set, len(job.plan.clients))
        job.status = (
            OK if has_quorum(self.cfg.faults.quorum, sent, len(accepted)) else QUORUM_MISSED
        )
        if self.policy.aggregates_each_group and job.status == OK:
            updates = self._decode(job, accepted)
            job.handle = self.executor.submit(self._aggregate, updates)

    def _decode(self, job: Job, replies: list[Message]) -> list:
        mode = self.cfg.comm.compression
        return [train_update(r, job.sent, mode) for r in replies]

    def _next_job(self) -> Job | None:
        """The settled job that ends first, if no job still in flight could end before it."""
        settled = [j for j in self._jobs if j.settled is not None]
        if not settled:
            return None
        first = min(settled, key=lambda j: (j.end_s, j.plan.start_s, j.weight_set))
        unsettled = min((j.plan.start_s for j in self._jobs if j.settled is None), default=math.inf)
        return first if first.end_s <= unsettled else None

    def _process(self, job: Job) -> None:
        """Apply a finished job in simulated-time order and tell the policy."""
        assert job.settled is not None
        self._jobs.remove(job)
        ws = job.weight_set
        accepted = job.settled.accepted.get(ws, [])
        tally = self._tallies.setdefault(ws, Tally())
        aggregate_s, updates = 0.0, []
        if self.policy.aggregates_each_group:
            if job.handle is not None:
                arrays, aggregate_s = job.handle.result()
                self._apply(ws, arrays, replaced=False)
                tally.busy.append((job.end_s, job.end_s + aggregate_s))
        else:
            updates = self._decode(job, accepted) if job.status == OK else []
        finished = Finished(
            job.plan, job.status, job.end_s, job.end_s + aggregate_s, updates, job.sent, job.version
        )
        if not self.policy.aggregates_each_group:
            aggregation = self.policy.collect(finished, self)
            if aggregation is not None:
                arrays, aggregate_s = self.executor.submit(
                    Timed(aggregation.fn), aggregation.updates
                ).result()
                self._apply(aggregation.weight_set, arrays, aggregation.replaces_weights)
                start = aggregation.start_s
                self._tallies.setdefault(aggregation.weight_set, Tally()).busy.append(
                    (start, start + aggregate_s)
                )
                finished.ready_s = start + aggregate_s
        self._observe_stragglers(job.settled)
        self._release(job)
        self._tally(tally, job, accepted, aggregate_s, finished.ready_s)
        end = self.policy.finished(finished, self)
        if end is not None:
            self._close_round(end)

    def _apply(self, ws: int, arrays: Arrays, replaced: bool) -> None:
        """A set's new weights: the aggregate, after its server optimiser (if any)."""
        current = self.sets[ws]
        if self.optimizers and not replaced:
            arrays = self.optimizers[ws].step(current.rounds_trained + 1, current.arrays, arrays)
        current.arrays = arrays
        current.rounds_trained += 1
        self._tallies.setdefault(ws, Tally()).updated = True

    def _observe_stragglers(self, settled: Settled) -> None:
        """Fold the job's round trips into the straggler estimates, in simulated-time order."""
        for client, (timing, epochs) in settled.timings.items():
            self.tracker.observe(client, timing, epochs)
        for row in settled.rows:
            row["straggler"] = self.tracker.is_straggler(row["client"])
        self.tracker.end_round(sorted(settled.timings))

    def _release(self, job: Job) -> None:
        """The job's clients are free again, each from when its own last try ended."""
        assert job.settled is not None
        for row in job.settled.rows:
            done = job.plan.start_s + row.get("offset_s", 0.0) + row.get("rtt_s", 0.0)
            if "rtt_s" not in row:
                done = job.end_s
            self._free_at[row["client"]] = max(self._free_at.get(row["client"], 0.0), done)
        self._in_use.difference_update(job.plan.clients)

    def _tally(
        self, tally: Tally, job: Job, accepted: list[Message], aggregate_s: float, ready_s: float
    ) -> None:
        assert job.settled is not None
        tally.start_s = min(tally.start_s, job.plan.start_s)
        tally.end_s = max(tally.end_s, job.end_s)
        tally.ready_s = max(tally.ready_s, ready_s)
        tally.aggregate_s += aggregate_s
        tally.num_sent += job.settled.sent.get(job.weight_set, len(job.plan.clients))
        if job.status == OK:
            tally.losses += [
                (float(r.content[METRICS][WEIGHT_KEY]), float(r.content[METRICS]["loss"]))
                for r in accepted
            ]
        tally.clients += on_clock(job.settled.rows, job.plan.start_s)

    # --- the end of a round -------------------------------------------------------------

    def _close_round(self, end: RoundEnd) -> None:
        """Evaluate the round's weight sets, write its records, checkpoint, check quorum."""
        tallies = {ws: self._tallies.pop(ws, Tally()) for ws in end.weight_sets}
        client_metrics, eval_rows = (
            self._evaluate_on_clients(end) if end.evaluate_clients else ({}, [])
        )
        everyone = len(end.weight_sets) == self.policy.num_weight_sets
        busy = [span for t in tallies.values() for span in t.busy]
        length = end.end_s - end.start_s
        now = time.perf_counter()
        self._sim_time = max(self._sim_time, end.end_s)
        clock = {
            "wall_time_s": now - self._run_started,
            "round_sim_s": length,
            "sim_time_s": end.end_s,
            "idle_s": length - busy_time(busy, end.start_s, end.end_s) if everyone else None,
        }
        record = RoundRecord(end.round)
        for ws in end.weight_sets:
            tally = tallies[ws]
            record.rounds.append(self._round_row(end, ws, tally, client_metrics, now, clock))
            record.clients += [self._client_row(row) for row in tally.clients]
            record.server += [
                SERVER.row(
                    strategy=self.label,
                    seed=self.cfg.seed,
                    round=end.round,
                    weight_set=str(ws),
                    busy_start_s=start,
                    busy_end_s=stop,
                )
                for start, stop in tally.busy
            ]
        # Merging comes last: the rows above describe each set's own model, the
        # merged row their average, and the next round starts from it.
        merged = self.policy.merge(end, self)
        if merged is not None:
            metrics = self.evaluate(merged)
            record.rounds.append(
                ROUNDS.row(
                    strategy=self.label,
                    seed=self.cfg.seed,
                    round=end.round,
                    weight_set=MERGED,
                    accuracy=metrics["accuracy"],
                    loss=metrics["loss"],
                    **clock,
                )
            )
        record.clients += [self._client_row(row) for row in eval_rows]
        self.watch.observe(
            {
                row["weight_set"]: row["status"]
                for row in record.rounds
                if row["weight_set"] != MERGED
            }
        )
        for callback in self.callbacks:
            callback.on_round_end(record)
        self.watch.stop_if_lost(end.round)

    def _round_row(
        self,
        end: RoundEnd,
        ws: int,
        tally: Tally,
        client_metrics: dict[int, dict[str, float]],
        now: float,
        clock: dict[str, Any],
    ) -> dict[str, Any]:
        weight_set = self.sets[ws]
        metrics = self.evaluate(weight_set.arrays)
        weight_set.history.append(metrics["accuracy"])
        client = client_metrics.get(ws, {})
        counted = [row for row in tally.clients if row["status"] == "ok"] if tally.updated else []
        started = self._last_wall.get(ws, self._run_started)
        self._last_wall[ws] = now
        return ROUNDS.row(
            strategy=self.label,
            seed=self.cfg.seed,
            round=end.round,
            weight_set=str(ws),
            status=OK if tally.updated else QUORUM_MISSED,
            accuracy=metrics["accuracy"],
            loss=metrics["loss"],
            client_accuracy=client.get("accuracy"),
            client_loss=client.get("loss"),
            train_loss=self.policy.train_loss(tally.losses) if tally.updated else math.nan,
            num_clients=len(counted),
            num_sent=tally.num_sent,
            num_examples=sum(int(row["num_examples"]) for row in counted),
            train_s=tally.end_s - tally.start_s if tally.clients else 0.0,
            aggregate_s=tally.aggregate_s,
            group_start_s=tally.start_s if tally.clients else end.start_s,
            group_end_s=tally.ready_s if tally.clients else end.start_s,
            round_wall_s=now - started,
            **clock,
            **bytes_moved(tally.clients),
        )

    def _client_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return CLIENTS.row(strategy=self.label, seed=self.cfg.seed, **row)

    def _evaluate_on_clients(
        self, end: RoundEnd
    ) -> tuple[dict[int, dict[str, float]], list[dict[str, Any]]]:
        """A seeded sample of clients evaluates the round's weight sets on their own data.

        The sample is split into as many groups as the round has weight sets,
        one set per group; the metrics are Flower's weighted means per set.
        """
        s = self.cfg.strategy
        sets = list(end.weight_sets)
        if s.fraction_evaluate == 0:
            return {}, []
        rng = rng_for(self.cfg.seed, "sample-evaluate", end.round)
        clients = sample_clients(self.directory.clients, s.fraction_evaluate, 1, rng)
        if len(clients) < len(sets):
            return {}, []
        groups = split_complementary(
            clients, len(sets), rng_for(self.cfg.seed, "split-evaluate", end.round)
        )
        messages: list[Message] = []
        for ws, group in zip(sets, groups, strict=True):
            config = {"server-round": end.round, "weight-set": ws}
            record = to_record(self.sets[ws].arrays)
            messages += group_messages(self.directory, group, record, config, MessageType.EVALUATE)
        ledger = Ledger(self.profiles)
        ids = list(self.grid.push_messages(messages))
        ledger.remember(messages)
        replies = self._wait(ids, self.cfg.faults.round_timeout_s)
        settled = ledger.settle(replies, "evaluate", end.round)
        metrics = {
            ws: dict(aggregate_metricrecords([r.content for r in replies], WEIGHT_KEY))
            for ws, replies in settled.accepted.items()
            if replies
        }
        return metrics, settled.rows

    def _wait(self, ids: list[str], timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        pending, replies = set(ids), []
        while pending and time.monotonic() < deadline:
            got = list(self.grid.pull_messages(pending))
            replies += got
            pending -= {r.metadata.reply_to_message_id for r in got}
            if pending:
                time.sleep(POLL_S)
        return replies

    def _train_config(self) -> dict[str, Any]:
        t = self.cfg.train
        return {
            "local-epochs": t.local_epochs,
            "batch-size": t.batch_size,
            "lr": t.lr,
            "momentum": t.momentum,
            "augment": t.augment,
        }

    # --- checkpoints ------------------------------------------------------------------

    def checkpoint_state(self) -> tuple[dict[str, Any], Arrays]:
        """Everything beyond the seed and the round that the next rounds depend on."""
        state = {
            "sim_time_s": self._sim_time,
            "wall_time_s": time.perf_counter() - self._run_started,
            "quorum_streaks": self.watch.streaks,
            "tracker": self.tracker.state(),
            "free_at": {str(c): t for c, t in self._free_at.items()},
            "policy": self.policy.state(),
            "weight_sets": [
                {"rounds_trained": ws.rounds_trained, "history": ws.history} for ws in self.sets
            ],
        }
        arrays = {
            f"weights/{ws.id}/{name}": value
            for ws in self.sets
            for name, value in ws.arrays.items()
        }
        for i, optimizer in enumerate(self.optimizers):
            arrays.update({f"optimizer/{i}/{k}": v for k, v in optimizer.state().items()})
        return state, arrays

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weight sets, optimisers, clocks, estimates, policy."""
        state = ckpt.strategy
        self._sim_time = float(state["sim_time_s"])
        self._wall_before = float(state["wall_time_s"])
        self.watch.streaks = {k: int(v) for k, v in state["quorum_streaks"].items()}
        self.tracker.load_state(state["tracker"])
        self._free_at = {int(c): float(t) for c, t in state.get("free_at", {}).items()}
        self.policy.load_state(state["policy"])
        self.checkpoint_round = ckpt.round
        for ws in self.sets:
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

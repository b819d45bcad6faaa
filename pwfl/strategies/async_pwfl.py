"""Asynchronous PWFL: each weight set moves on as soon as its own group is aggregated.

There is no round barrier over the K groups. When weight set k's group has
replied and been aggregated, the server pushes weight set k's next round to a
fresh group drawn from the clients that are free at that moment on the
simulated clock, while the other groups are still training. No client is ever
in two groups at once.

The loop is a conservative discrete-event simulation on the simulated clock,
driven by Flower's Grid push/pull: groups are pushed as soon as they start,
replies are pulled as they come, and a finished group is *processed* (its
aggregation, its clients released, its weight set's next group started) only
once no group still in flight could finish before it. So the order of events,
and the clients each group can draw, follow simulated time, not the order in
which this host happened to run the clients.

Client times are measured CPU times, so the interleaving of the weight sets can
differ between two runs of the same seed; the synchronous modes repeat exactly.
Clients do not run federated evaluation in this mode (``client_accuracy`` is
empty); every weight set is evaluated on the server's test set after each of
its rounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from pwfl.callbacks import RoundRecord
from pwfl.config import num_sampled
from pwfl.quorum import OK, QUORUM_MISSED, QuorumWatch, has_quorum
from pwfl.seeding import rng_for
from pwfl.strategies.common import (
    METRICS,
    WEIGHT_KEY,
    available_clients,
    group_messages,
    retries_for,
    to_record,
    train_update,
)
from pwfl.strategies.ledger import Ledger, Settled, bytes_moved, on_clock
from pwfl.strategies.pwfl import PWFL, WeightSet, _test_metrics, _weighted_loss

PULL_INTERVAL_S = 0.05


@dataclass
class Job:
    """One group training one weight set for one of its rounds."""

    weight_set: int
    round: int
    clients: list[int]
    start_s: float
    ledger: Ledger
    ids: set[str]
    pushed_at: float
    messages: dict[str, Message] = field(default_factory=dict)
    """Every message of the job (retries included) by id."""
    replies: list[Message] = field(default_factory=list)
    settled: Settled | None = None

    @property
    def end_s(self) -> float:
        """When the group's last counted reply arrived on the simulated clock."""
        assert self.settled is not None
        return self.start_s + self.settled.group_s.get(self.weight_set, 0.0)


class AsyncPWFL(PWFL):
    """PWFL without a round barrier between the K weight sets."""

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
        """Run ``num_rounds`` rounds of every weight set, each at its own pace."""
        initial = {name: a.numpy() for name, a in initial_arrays.items()}
        self.weight_sets = [WeightSet(i, dict(initial)) for i in range(self.k)]
        self._config = dict(train_config or ConfigRecord())
        # None (no time limit, round_timeout_s = inf) compares like an endless wait.
        self._grid, self._timeout = grid, math.inf if timeout is None else timeout
        self._free_at = {c: 0.0 for c in self.directory.clients}
        self._in_use: set[int] = set()
        self._waiting: list[tuple[int, float]] = []  # weight sets that found no free client
        self._run_started = time.perf_counter()
        s = self.cfg.strategy
        sampled = num_sampled(len(self.directory.clients), s.fraction_train, s.min_train_nodes)
        self._group_size = max(1, math.ceil(sampled / self.k))
        self._num_rounds = num_rounds
        # Without a round barrier, "every weight set missed quorum N rounds in a
        # row" becomes N x k group rounds in a row that missed it.
        self.watch = QuorumWatch(self.cfg.faults.max_missed_rounds * self.k)

        jobs: list[Job] = []
        for ws in range(self.k):
            self._launch(ws, 1, 0.0, jobs)
        while jobs or self._waiting:
            self._pull(jobs)
            job = self._next_safe(jobs)
            if job is None:
                if not jobs:  # only waiting sets and nobody in flight: cannot happen
                    raise RuntimeError("async PWFL stalled: no client is free")
                time.sleep(PULL_INTERVAL_S)
                continue
            jobs.remove(job)
            self._process(job, jobs)
        result = Result()
        result.arrays = to_record(self.weight_sets[0].arrays)
        return result

    # --- scheduling on the simulated clock ----------------------------------------

    def _launch(self, ws: int, server_round: int, at: float, jobs: list[Job]) -> None:
        """Push weight set ``ws``'s next round to clients free at simulated time ``at``."""
        online = available_clients(self.directory.clients, self.cfg, server_round)
        free = [c for c in online if c not in self._in_use and self._free_at[c] <= at]
        if not free:
            self._waiting.append((ws, server_round))
            return
        rng = rng_for(self.cfg.seed, "async-sample", ws, server_round)
        take = min(self._group_size, len(free))
        clients = sorted(int(c) for c in rng.choice(free, size=take, replace=False))
        self._in_use.update(clients)
        cfg = {
            **self._config,
            "server-round": server_round,
            "weight-set": ws,
            "checkpoint-round": self.checkpoint_round,  # -1: async writes no checkpoints
        }
        messages = group_messages(
            self.directory,
            clients,
            to_record(self.weight_sets[ws].arrays),
            cfg,
            MessageType.TRAIN,
            epochs=self.tracker.epochs_for,
        )
        ids = list(self._grid.push_messages(messages))
        ledger = Ledger(
            self.directory, self.ledger.profiles, self.tracker, self.cfg.stragglers.deadline_s
        )
        ledger.remember(messages)
        job = Job(ws, server_round, clients, at, ledger, set(ids), time.time())
        job.messages = dict(zip(ids, messages, strict=True))
        jobs.append(job)

    def _pull(self, jobs: list[Job]) -> None:
        """Collect replies; a job whose replies are all in (or timed out) is settled."""
        for job in jobs:
            if job.settled is not None:
                continue
            got = list(self._grid.pull_messages(job.ids))
            job.replies += got
            job.ids -= {r.metadata.reply_to_message_id for r in got}
            self._retry_errors(job, got)
            if not job.ids or time.time() - job.pushed_at > self._timeout:
                job.settled = job.ledger.settle(job.replies, "train", job.round)

    def _retry_errors(self, job: Job, replies: list[Message]) -> None:
        """Send a failed message again at once, up to ``faults.max_retries`` tries."""
        retries = retries_for(job.messages, replies, self.cfg.faults.max_retries)
        if retries:
            ids = list(self._grid.push_messages(retries))
            job.messages.update(zip(ids, retries, strict=True))
            job.ids.update(ids)
            job.ledger.remember(retries)

    def _next_safe(self, jobs: list[Job]) -> Job | None:
        """The settled job that ends first, if no unsettled job could end before it."""
        settled = [j for j in jobs if j.settled is not None]
        if not settled:
            return None
        first = min(settled, key=lambda j: (j.end_s, j.weight_set))
        unsettled_start = min((j.start_s for j in jobs if j.settled is None), default=math.inf)
        return first if first.end_s <= unsettled_start else None

    def _process(self, job: Job, jobs: list[Job]) -> None:
        """Aggregate a finished group, record it, and start its weight set's next round."""
        assert job.settled is not None
        accepted = job.settled.accepted.get(job.weight_set, [])
        ws = self.weight_sets[job.weight_set]
        aggregate_s = 0.0
        sent = job.settled.sent.get(job.weight_set, len(job.clients))
        status = OK if has_quorum(self.cfg.faults.quorum, sent, len(accepted)) else QUORUM_MISSED
        if status == OK:
            mode = self.cfg.comm.compression
            updates = [train_update(r, ws.arrays, mode) for r in accepted]
            aggregated, aggregate_s = self.executor.submit(self.aggregate_fn, updates).result()
            ws.arrays = self._optimizer_step(job.weight_set, aggregated)
            ws.rounds_trained += 1
        ready = job.end_s + aggregate_s
        for row in job.settled.rows:  # release the clients at their own finishing times
            self._free_at[row["client"]] = job.start_s + row.get("rtt_s", job.end_s - job.start_s)
        self._in_use.difference_update(job.clients)
        self._record(job, accepted, aggregate_s, ready, status)
        if job.round < self._num_rounds:
            self._launch(job.weight_set, job.round + 1, ready, jobs)
        waiting, self._waiting = self._waiting, []
        for other, other_round in waiting:
            self._launch(other, other_round, job.end_s, jobs)

    def _record(
        self, job: Job, accepted: list[Message], aggregate_s: float, ready: float, status: str
    ) -> None:
        assert job.settled is not None
        metrics = self.evaluate_weights(self.weight_sets[job.weight_set].arrays)
        self.weight_sets[job.weight_set].history.append(metrics["accuracy"])
        clients = on_clock(job.settled.rows, job.start_s)
        row = {
            "round": job.round,
            "weight_set": str(job.weight_set),
            "status": status,
            **_test_metrics(metrics),
            "train_loss": _weighted_loss(accepted),
            "num_clients": len(accepted),
            "num_sent": len(job.clients),
            "num_examples": sum(int(r.content[METRICS][WEIGHT_KEY]) for r in accepted),
            "train_s": job.end_s - job.start_s,
            "aggregate_s": aggregate_s,
            "group_start_s": job.start_s,
            "group_end_s": ready,
            "round_wall_s": time.time() - job.pushed_at,
            "wall_time_s": time.perf_counter() - self._run_started,
            "round_sim_s": ready - job.start_s,
            "sim_time_s": ready,
            "idle_s": float("nan"),  # no round barrier: idle time is in server.csv
            **bytes_moved(job.settled.rows),
        }
        server = [
            {
                "round": job.round,
                "weight_set": job.weight_set,
                "busy_start_s": job.end_s,
                "busy_end_s": ready,
            }
        ]
        record = RoundRecord(job.round, rounds=[row], clients=clients, server=server)
        self.watch.observe([status])
        for callback in self.callbacks:
            callback.on_round_end(record)
        self.watch.stop_if_lost(job.round)

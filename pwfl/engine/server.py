"""The server's side of a finished job: quorum, its aggregations, their time on a core.

One path for every strategy. When the server stops waiting for a job (all its
clients settled, or its deadline or timeout), the replies counted then are
decoded once and handed to the policy, which answers with the aggregations it
wants (:meth:`~pwfl.strategies.base.Policy.aggregations`). The engine runs each
on the executor, marks exactly its updates' replies as aggregated, and prices it
on the server's cores: an aggregation the job waits for changes the weights when
its core is done (a group's), one nobody waits for changes them at once (a
server step taken when a buffer fills).
"""

from __future__ import annotations

from pwfl.aggregation import Arrays, Timed, Update
from pwfl.allocation import update_norm
from pwfl.clock import aggregation_bytes, aggregation_seconds
from pwfl.engine.events import Aggregated
from pwfl.engine.jobs import Job, Tally
from pwfl.engine.parts import Parts
from pwfl.ledger import OK, Try
from pwfl.quorum import QUORUM_MISSED, has_quorum
from pwfl.strategies.base import Aggregation, Finished
from pwfl.transport import (
    ARRAYS,
    CLIENT,
    NODE_MEAN,
    SUMMED_BY,
    arrays_of,
    config_of,
    to_numpy,
    train_update,
)


class ServerSide(Parts):
    """Finishing jobs and running, pricing and applying their aggregations."""

    def complete(self, job: Job) -> None:
        """The server stops waiting for the job: quorum, stragglers, then its aggregations,
        of exactly the replies counted now."""
        now = self.now
        job.end_s = now
        for token in job.events:
            self.sim.drop(token)
        counted = job.counted()
        job.status = (
            OK
            if has_quorum(self.cfg.faults.quorum, job.first_tries(), len(counted))
            else QUORUM_MISSED
        )
        for attempt in job.tries:
            attempt.straggler = self.tracker.is_straggler(
                attempt.client, self.costs[job.weight_set]
            )
        job.staleness = self.sets[job.weight_set].rounds_trained - job.version
        for attempt in counted:
            attempt.staleness = job.staleness
        updates = self.decode(job, counted) if job.status == OK else []
        if updates and self.cfg.strategy.group_policy == "variance-reduced":
            for attempt, (arrays, _) in zip(counted, updates, strict=True):
                self.norms[attempt.client, job.weight_set] = update_norm(arrays, job.sent)
        finished = self._finished(job, now, updates)
        aggregations = self.policy.aggregations(finished, self)  # type: ignore[arg-type]
        waited = [a for a in aggregations if a.waits]
        if len(waited) > 1:
            raise RuntimeError("a job can wait for one aggregation only")
        if waited:
            self._aggregate_later(job, waited[0])
        else:
            self.finish(finished)
        for aggregation in aggregations:
            if not aggregation.waits:
                self._aggregate_now(aggregation)

    def _finished(self, job: Job, ready_s: float, updates: list[Update]) -> Finished:
        """What the policy is told of a job the server is done with at ``ready_s``."""
        assert job.end_s is not None
        return Finished(
            job.plan, job.status, job.end_s, ready_s, updates, job.sent, job.staleness, job.id
        )

    def decode(self, job: Job, tries: list) -> list[Update]:
        """The counted replies' updates, decompressed (the one place they are decoded).

        Node aggregation: the replies a node summed count as one update, its mean
        weighted by its clients' examples (:func:`pwfl.transport.node_mean`), in
        the place of its first client; the server never counts some of a node's sum
        and not the rest (a config that could is refused).
        """
        mode = self.cfg.comm.compression
        places: list[Update | str] = []  # an update, or the cohort whose mean goes there
        summed: dict[str, list[Try]] = {}
        for attempt in tries:
            assert attempt.reply is not None and attempt.answered
            content = attempt.reply.content
            if ARRAYS in content:
                places.append(train_update(attempt.reply, job.sent, mode))
                continue
            cohort = str(config_of(content, CLIENT)[SUMMED_BY])
            if cohort not in summed:
                places.append(cohort)
            summed.setdefault(cohort, []).append(attempt)
        return [_node_mean(summed[p]) if isinstance(p, str) else p for p in places]

    def updates_from(self, tries: list[Try]) -> int:
        """How many updates ``tries``' replies make (a node's sum is one)."""
        cohorts = set()
        count = 0
        for attempt in tries:
            assert attempt.reply is not None
            content = attempt.reply.content
            if ARRAYS in content:
                count += 1
            else:
                cohorts.add(str(config_of(content, CLIENT)[SUMMED_BY]))
        return count + len(cohorts)

    def _run(self, aggregation: Aggregation) -> tuple[Arrays, float, float, float]:
        """Run ``aggregation`` on the executor and place it on a server core from now:
        its weights, host seconds, and start and end on the simulated clock."""
        arrays, wall = self.executor.submit(Timed(aggregation.fn), aggregation.updates).result()
        used = [t for job_id in aggregation.sources for t in self.job(job_id).counted()]
        if self.updates_from(used) != len(aggregation.updates):
            raise RuntimeError("an aggregation's updates do not match the replies they came from")
        for attempt in used:
            attempt.aggregated = True
        duration = self.server_seconds(aggregation.weight_set, [t.bytes_up for t in used], wall)
        start, end = self.sim.cores.run(self.now, duration)
        return arrays, wall, start, end

    def _aggregate_later(self, job: Job, aggregation: Aggregation) -> None:
        arrays, wall, start, end = self._run(aggregation)
        self.sim.at(end, Aggregated(job, aggregation, start, arrays, wall))

    def aggregation_done(self, event: Aggregated) -> None:
        """A group's aggregation ends on its server core: the set's weights change now."""
        ws = event.aggregation.weight_set
        self.apply(ws, event.arrays, optimise=True)
        self.tally(ws).add_busy(event.start_s, self.now, event.wall_s)
        self.finish(self._finished(event.job, self.now, event.aggregation.updates))

    def _aggregate_now(self, aggregation: Aggregation) -> None:
        """An aggregation nobody waits for (a FedBuff server step): the weights change now
        and every job planned from now on is sent them; its core time is recorded."""
        ws = aggregation.weight_set
        arrays, wall, start, end = self._run(aggregation)
        self.apply(ws, arrays, optimise=False)
        self.tally(ws).add_busy(start, end, wall)
        round_end = self.policy.aggregated(aggregation, end, self)  # type: ignore[arg-type]
        if round_end is not None:
            self.close_round(round_end)

    def finish(self, finished: Finished) -> None:
        """A job is done (its update applied, or skipped): tell the policy."""
        tally = self.tally(finished.plan.weight_set)
        tally.ready_s = max(tally.ready_s, finished.ready_s)
        end = self.policy.finished(finished, self)  # type: ignore[arg-type]
        if self.watch.updates_per_step:
            delivered = finished.status == OK and bool(finished.updates)
            self.watch.observe_update(delivered, self.sets[finished.plan.weight_set].rounds_trained)
        if end is not None:
            self.close_round(end)

    def server_seconds(self, ws: int, payloads: list[int], wall: float) -> float:
        """The server's time for one aggregation of ``payloads`` (each update's bytes as it
        arrived), for a group and a server step alike: its host time on the measured
        clock, else its memory traffic, a compressed update decoded first."""
        if self.cfg.clock.compute == "measured":
            return wall
        model = sum(v.nbytes for v in self.sets[ws].arrays.values())
        compressed = self.cfg.comm.compression != "none"
        num_bytes = aggregation_bytes(payloads, model, compressed)
        return aggregation_seconds(num_bytes, self.cfg.server.memory_gbps)

    def apply(self, ws: int, arrays: Arrays, optimise: bool) -> None:
        """A set's new weights: the aggregate, after its server optimiser (if any).

        Arrays the clients did not send (a personal layer a client keeps) keep the
        set's current values.
        """
        current = self.sets[ws]
        arrays = {name: arrays.get(name, value) for name, value in current.arrays.items()}
        optimizer = self.optimizers[ws] if self.optimizers else None
        if optimizer is not None and optimise:
            arrays = optimizer.step(current.rounds_trained + 1, current.arrays, arrays)
        current.arrays = arrays
        current.rounds_trained += 1
        self.tally(ws).updated = True

    def tally(self, ws: int) -> Tally:
        return self.tallies.setdefault(ws, Tally())


def _node_mean(group: list[Try]) -> Update:
    """The update a node's sum makes: its mean, weighted by the examples of all its
    clients, which the server must count every one of."""
    holder = next((t for t in group if t.reply is not None and NODE_MEAN in t.reply.content), None)
    if holder is None or holder.metric("node-clients") != len(group):
        raise RuntimeError(
            "a node's mean of its clients' updates holds an update the server does not count"
        )
    assert holder.reply is not None
    return to_numpy(arrays_of(holder.reply.content, NODE_MEAN)), holder.metric("node-weight")

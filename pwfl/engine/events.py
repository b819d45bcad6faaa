"""Events on the simulated clock, and what the engine does when each happens.

A try (one message to one client) goes through start -> downloaded ->
computed -> uploaded -> arrived, or -> failed when the client reports an error;
a job can be given up on (its deadline, its timeout); an aggregation ends on a
server core. Each event has one small handler; events are taken strictly in
simulated-time order, so what happens depends on the simulated clock alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pwfl.aggregation import Arrays
from pwfl.clock import ClientTiming, compute_seconds
from pwfl.devices import ClientProfile
from pwfl.engine.jobs import Job
from pwfl.engine.parts import Parts
from pwfl.ledger import FAILED, LOST, OK, RETRIED, Try, error_reason
from pwfl.strategies.base import Aggregation
from pwfl.transport import STATE, arrays_of, retry_config, to_numpy


@dataclass(frozen=True)
class Start:
    attempt: Try


@dataclass(frozen=True)
class Downloaded:
    attempt: Try


@dataclass(frozen=True)
class Computed:
    attempt: Try


@dataclass(frozen=True)
class Uploaded:
    attempt: Try


@dataclass(frozen=True)
class Arrived:
    attempt: Try


@dataclass(frozen=True)
class Failed:
    attempt: Try


@dataclass(frozen=True)
class GiveUp:
    job: Job
    status: str
    """late (the deadline) or timeout (faults.round_timeout_s)."""


@dataclass(frozen=True)
class Aggregated:
    job: Job
    aggregation: Aggregation
    start_s: float
    arrays: Arrays
    wall_s: float = 0.0


TRY_EVENTS = (Start, Downloaded, Computed, Uploaded, Arrived, Failed)


class EventHandling(Parts):
    """One handler per event; the engine's loop calls :meth:`handle`."""

    def ready(self, event: Any) -> bool:
        """Whether the host knows what the event needs: after its start, a try's events
        need the client's reply (or the host's giving up on it)."""
        if isinstance(event, TRY_EVENTS) and not isinstance(event, Start):
            attempt = event.attempt
            return attempt.reply is not None or attempt.lost or attempt.resolved
        return True

    def handle(self, event: Any) -> None:
        if isinstance(event, Aggregated):
            self.aggregation_done(event)
        elif isinstance(event, GiveUp):
            self._give_up(event)
        elif not event.attempt.resolved:  # else the server gave up on it before this
            handler = {
                Start: self._started,
                Downloaded: self._downloaded,
                Computed: self._computed,
                Uploaded: self._uploaded,
                Arrived: self._arrived,
                Failed: self._failed,
            }[type(event)]
            handler(event.attempt, self.profiles[event.attempt.client])

    def _give_up(self, event: GiveUp) -> None:
        job = event.job
        if job.end_s is None:
            for attempt in job.tries:
                if not attempt.resolved:
                    self.give_up(attempt, event.status)
            self.complete(job)

    def _started(self, attempt: Try, profile: ClientProfile) -> None:
        attempt.start_s = self.now
        self.sim.transfer(
            "up", attempt.key, attempt.bytes_down, profile.down_mbps, Downloaded(attempt)
        )

    def _downloaded(self, attempt: Try, profile: ClientProfile) -> None:
        now = self.now
        attempt.download_s = now - attempt.start_s
        if attempt.lost:  # the host has no reply: nothing to place on the clock
            self.resolve(attempt, LOST)
            self.check_complete(attempt)
            return
        if attempt.silent:
            return  # a hanging client: the server waits until the job's timeout
        assert attempt.reply is not None
        if attempt.reply.has_error():
            self.schedule(attempt, now + profile.latency_ms / 1000, Failed(attempt))
        else:
            attempt.compute_s = self._compute_seconds(attempt, profile)
            self.schedule(attempt, now + attempt.compute_s, Computed(attempt))

    def _computed(self, attempt: Try, profile: ClientProfile) -> None:
        self.sim.transfer("down", attempt.key, attempt.bytes_up, profile.up_mbps, Uploaded(attempt))

    def _uploaded(self, attempt: Try, profile: ClientProfile) -> None:
        attempt.upload_s = self.now - attempt.start_s - attempt.download_s - attempt.compute_s
        self.schedule(attempt, self.now + profile.latency_ms / 1000, Arrived(attempt))

    def _arrived(self, attempt: Try, profile: ClientProfile) -> None:
        self.resolve(attempt, OK)
        latency = (
            attempt.end_s
            - attempt.start_s
            - attempt.download_s
            - attempt.compute_s
            - attempt.upload_s
        )
        timing = ClientTiming(attempt.download_s, attempt.compute_s, attempt.upload_s, latency)
        size = self.population.size(attempt.client, attempt.weight_set)
        run = attempt.metric("examples-run", float(size))
        cost = self.costs[attempt.weight_set]
        self.tracker.observe(attempt.client, cost, timing, run / size if size else 1.0)
        self.check_complete(attempt)

    def _failed(self, attempt: Try, profile: ClientProfile) -> None:
        assert attempt.reply is not None
        attempt.error = error_reason(attempt.reply)
        config = retry_config(attempt.config, attempt.reply, self.cfg.faults.max_retries)
        job = self.job(attempt.job)
        if config is None or job.end_s is not None:
            self.resolve(attempt, FAILED)
            self.check_complete(attempt)
            return
        self.resolve(attempt, RETRIED, release=False)
        retry = Try(
            job.id,
            attempt.client,
            attempt.weight_set,
            attempt.round,
            attempt.attempt + 1,
            attempt.epochs,
            attempt.arrays,
            config,
        )
        job.tries.append(retry)
        self.messenger.send(retry)
        self.schedule(retry, self.now, Start(retry))

    def _compute_seconds(self, attempt: Try, profile: ClientProfile) -> float:
        if self.cfg.clock.compute == "measured":
            return attempt.metric("train-measured-s") / profile.speed
        examples = int(attempt.metric("examples-run"))
        flops = (
            self.set_models[attempt.weight_set].flops_per_example
            if self.set_models
            else self.flops_per_example
        )
        return compute_seconds(examples, flops, self.cfg.clock.reference_gflops, profile.speed)

    # --- settling tries and jobs --------------------------------------------------------

    def schedule(self, attempt: Try, at: float, event: Any) -> None:
        attempt.events.append(self.sim.at(at, event))

    def resolve(self, attempt: Try, status: str, release: bool = True) -> None:
        """A try's outcome is known now: its client is free again unless it is retried.

        In pool binding the server keeps what the client keeps between its rounds
        (momentum, a personal layer), from its counted replies: a try given up on
        leaves the client's state as it was.
        """
        attempt.status = status
        if status == OK and self.nodes.pool and attempt.reply is not None:
            if STATE in attempt.reply.content:
                kept = to_numpy(arrays_of(attempt.reply.content, STATE))
                self.messenger.states[attempt.client, attempt.weight_set] = kept
        attempt.end_s = self.now
        if math.isnan(attempt.start_s):  # given up on before it could start
            attempt.start_s = self.now
        self.sim.cancel("up", attempt.key)
        self.sim.cancel("down", attempt.key)
        for token in attempt.events:
            self.sim.drop(token)
        self.messenger.forget(attempt)
        if release:
            self.free_at[attempt.client] = self.now
            self.busy.discard(attempt.client)
            self.job(attempt.job).waiting.discard(attempt.client)

    def give_up(self, attempt: Try, status: str) -> None:
        """The server stops waiting for a try still in flight (late, timeout, unused).

        Before its download ends on the simulated clock the client has not started
        its work there, and whether the host already holds its reply is host
        timing: the try keeps nothing of that reply, so its row is the same on any
        host. From then on the host held the reply when the download's event was
        handled, and its row keeps the client's numbers.
        """
        if math.isnan(attempt.download_s):
            attempt.reply = None
        self.resolve(attempt, status)

    def check_complete(self, attempt: Try) -> None:
        job = self.job(attempt.job)
        if job.end_s is None and not job.waiting:
            self.complete(job)

"""FedBuff: clients train asynchronously; the server steps every ``buffer_size`` updates.

Its keys live in its own table, ``[strategy.fedbuff]`` (:class:`FedBuffSettings`).

Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation",
AISTATS 2022, Algorithm 1. ``concurrency`` clients (by default as many as the
other strategies sample per round) train at any moment, each on the global
model of when it was sent. When a client's update arrives the
server puts its delta ``Δ_i = y_i - w_sent`` into a buffer, weighted by its
staleness ``s(τ_i) = (1 + τ_i)^-a`` (``τ_i``: server steps since the client was
sent; ``a`` is ``staleness_exponent``, 0.5 in the paper's experiments), and at
once sends the global model to a free client drawn from the seed. Every
``buffer_size`` updates it takes the step ``w <- w + η (1/K) Σ_i s(τ_i) Δ_i``
(``η``: ``strategy.server_lr``, 1 when 0; ``K``: ``buffer_size``), the paper's
server update with plain SGD as the server optimiser. Running statistics
(batch norm's) are not parameters: a stale client's delta is taken against
weights the server has since moved, which can drive a variance below zero, so
they become the staleness-weighted mean of the clients' values instead.
``strategy.num_rounds`` counts the steps; each is a round of the records.

The step takes effect the moment the buffer fills (Algorithm 1): the
client whose update filled it, sent again at once, gets the stepped model, and
so does every job planned later. The server's time for the step (its memory
traffic on a core, priced as a group aggregation) is recorded, not waited
for. Each reply is recorded in the round of the step that used it; those the
run ends without using (in flight, or still buffered) are recorded as
``unused``.

Everything happens on the simulated clock: a client becomes free when its
update arrives, and the engine never gives a client a second job that
overlaps its first. A slot that finds no free online client waits for the next
reply, or when none is in flight, for the next online period
(``clients.online_period_s``). Load balancing plans a client's local epochs at each
dispatch, from the round-trip estimates as they stand then: FedBuff has no rounds to
plan for, every dispatch is its own. Clients do not run federated evaluation
(``client_accuracy`` is empty); the model is evaluated on the server's test set after
every step.
A run stops, with its records kept, when ``faults.max_missed_rounds`` x
``buffer_size`` client updates in a row have failed (the engine's quorum watch,
:class:`pwfl.quorum.QuorumWatch`, with ``updates_per_step = buffer_size``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from pwfl.aggregation import Arrays, Update, buffered_step
from pwfl.config import Config, ranged
from pwfl.errors import ConfigError
from pwfl.quorum import OK
from pwfl.seeding import rng_for
from pwfl.strategies.base import Aggregation, Finished, Plan, Policy, RoundEnd, Server, free_when
from pwfl.strategies.fedavg import one_model_only


def staleness_weight(staleness: int, exponent: float) -> float:
    """``(1 + τ)^-a``: the weight of an update ``τ`` server steps old (1 for a fresh one)."""
    return float((1.0 + staleness) ** -exponent)


@dataclass(frozen=True)
class FedBuffSettings:
    """FedBuff's own keys (Nguyen et al., 2022), its table ``[strategy.fedbuff]``."""

    buffer_size: int = ranged(5, ge=1)
    """Client updates buffered before each server step (K in Nguyen et al.,
    AISTATS 2022); half of the quick setting's 10 clients, so a step averages as
    many updates as a PWFL group of five."""
    concurrency: int = ranged(0, ge=0)
    """Clients training at any moment, at most data.num_clients; 0 means as many as
    the other strategies sample per round (fraction_train, min_train_nodes), so the
    same number of devices is busy. Above buffer_size, equal devices' updates arrive
    together, all computed from one model, and are applied over several steps (their
    staleness is in clients.csv)."""
    staleness_exponent: float = ranged(0.5, ge=0)
    """An update sent tau server steps ago is weighted (1 + tau)^-a with this a; 0.5
    is the paper's polynomial staleness function, 0 ignores staleness."""


class FedBuff(Policy):
    """Buffered asynchronous aggregation of single-client updates."""

    name = "fedbuff"
    Settings = FedBuffSettings
    rounds_are_steps = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.buffer_size = self.updates_per_step = self.steps_every()
        """Client updates per server step (the quorum watch's unit of failures too)."""
        self.server_lr = cfg.strategy.server_lr or 1.0
        self.exponent = self.settings.staleness_exponent
        self.steps = 0
        """Server steps taken so far."""
        self._buffer: list[Update] = []
        self._sources: list[int] = []
        """The job each buffered update came from."""
        self._due: list[float] = [0.0] * self.clients_in_flight(cfg)
        """Simulated times at which a free slot sends the model to a new client."""
        self._sent = 0
        self._last_step_s = 0.0

    def steps_every(self) -> int:
        """Client updates per server step: ``buffer_size``."""
        return int(self.settings.buffer_size)

    def plan(self, server: Server) -> list[Plan]:
        """Fill every free slot with a client drawn from those free and online at the
        slot's time (or, when every client is offline, the next online period's)."""
        if self.steps >= self.cfg.strategy.num_rounds:
            return []
        plans: list[Plan] = []
        taken: set[int] = set()
        due, self._due = self._due, []
        for at in due:
            rng = rng_for(self.cfg.seed, "fedbuff-sample", self._sent)
            found = free_when(server, at, rng, taken, functools.partial(_one_of, rng))
            if found is None:  # try again when the next update frees a client
                self._due.append(at)
                continue
            at, (client,) = found
            self._sent += 1
            taken.add(client)
            epochs = server.local_epochs(0, (client,))
            plans.append(Plan(0, self.steps + 1, (client,), at, epochs))
        return plans

    each_update = True  # each update is weighed on its own in a buffered step

    def aggregations(self, job: Finished, server: Server) -> list[Aggregation]:
        """Buffer the client's staleness-weighted delta; step when the buffer is full."""
        if job.status != OK or not job.updates:
            return []
        self._buffer.append(
            buffered_update(job, server.statistics, self.exponent, self.buffer_size)
        )
        self._sources.append(job.job)
        if len(self._buffer) < self.buffer_size:
            return []
        buffered, self._buffer = self._buffer, []
        sources, self._sources = tuple(self._sources), []
        step = functools.partial(
            buffered_step,
            base=server.weights(0),
            server_lr=self.server_lr,
            statistics=server.statistics,
        )
        return [Aggregation(0, step, buffered, sources, waits=False)]

    def finished(self, job: Finished, server: Server) -> RoundEnd | None:
        """The client's update is in: its slot goes to a new client now."""
        self._due.append(job.end_s)
        return None

    def aggregated(self, aggregation: Aggregation, ready_s: float, server: Server) -> RoundEnd:
        """A server step is applied: it ends a round of the records."""
        self.steps += 1
        end = RoundEnd(self.steps, (0,), self._last_step_s, ready_s, evaluate_clients=False)
        self._last_step_s = ready_s
        return end

    def done(self) -> bool:
        return self.steps >= self.cfg.strategy.num_rounds

    def state(self) -> dict[str, Any]:
        """Steps taken, the slots due, the buffer's weights and sources."""
        return {
            "steps": self.steps,
            "due": self._due,
            "sent": self._sent,
            "last_step_s": self._last_step_s,
            "sources": self._sources,
            "weights": [weight for _, weight in self._buffer],
            "names": [sorted(delta) for delta, _ in self._buffer],
        }

    def state_arrays(self) -> Arrays:
        return {
            f"buffer/{i}/{name}": value
            for i, (delta, _) in enumerate(self._buffer)
            for name, value in delta.items()
        }

    def load_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        self.steps = int(state["steps"])
        self._due = [float(at) for at in state["due"]]
        self._sent = int(state["sent"])
        self._last_step_s = float(state["last_step_s"])
        self._sources = [int(j) for j in state["sources"]]
        self._buffer = [
            ({name: arrays[f"buffer/{i}/{name}"] for name in names}, float(weight))
            for i, (names, weight) in enumerate(zip(state["names"], state["weights"], strict=True))
        ]

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """One model, its own step; at most one job per client at a time."""
        one_model_only(cfg, cls.name)
        concurrency, n = cls.settings_of(cfg).concurrency, cfg.data.num_clients
        if concurrency > n:
            raise ConfigError(
                f"config key 'strategy.{cls.name}.concurrency' = {concurrency!r} is invalid: "
                f"must be <= data.num_clients ({n}): a client trains one model at a time"
            )

    @classmethod
    def clients_in_flight(cls, cfg: Config) -> int:
        """``strategy.<name>.concurrency``, or as many as the other strategies sample per
        round."""
        return cls.settings_of(cfg).concurrency or Policy.clients_in_flight(cfg)


def _one_of(rng: np.random.Generator, free: list[int]) -> list[int]:
    """One of the ``free`` clients, uniformly at random."""
    return [int(rng.choice(free))]


def buffered_update(
    job: Finished, statistics: frozenset[str], exponent: float, buffer_size: int
) -> Update:
    """A single-client job's entry in a buffer: its delta ``y - w_sent`` (a running
    statistic's own value instead, :func:`pwfl.aggregation.buffered_step`), weighted
    ``(1 + tau)^-a / buffer_size``."""
    arrays, _ = job.updates[0]
    delta = {
        name: value if name in statistics else _minus(value, job.sent[name])
        for name, value in arrays.items()
    }
    return delta, staleness_weight(job.staleness, exponent) / buffer_size


def _minus(value: np.ndarray, sent: np.ndarray) -> np.ndarray:
    # Integer arrays (batch-norm counters) become float deltas; floats keep their dtype.
    dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float64
    return np.subtract(value, sent, dtype=dtype)

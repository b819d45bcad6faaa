"""What a strategy is to the round engine: a policy it asks, with no loop of its own.

The engine (:mod:`pwfl.engine`) owns the round: it sends jobs, collects the
replies with retries, applies the quorum rule, aggregates on the executor,
applies the server optimiser, evaluates, advances the clocks, writes the
records and calls the callbacks. A policy answers its questions:

* :meth:`Policy.plan`: which jobs to send now (a *job* is one weight set sent
  to one group of clients at a simulated time), i.e. which clients, how they
  form groups, which weight set each group trains and when each group is sent;
* :meth:`Policy.finished`: a job is done (its update applied); does a round of
  the records end with it?
* :meth:`Policy.collect`: for policies that do not aggregate each group on its
  own (FedBuff), how updates become an aggregation, and :meth:`Policy.stepped`:
  such an aggregation is applied; does a round of the records end with it?
* :meth:`Policy.merge`: whether the weight sets are merged after a round.

Policies see the engine through :class:`Server` and never import the
transport (Flower) or the executor (Ray): they work on client ids, simulated
times and NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pwfl.aggregation import AggregateFn, Arrays, Update, flower_metric_mean
from pwfl.config import Config


@dataclass(frozen=True)
class Plan:
    """A job to send: weight set ``weight_set`` to ``clients`` at simulated time ``start_s``."""

    weight_set: int
    round: int
    """The round of the records this job belongs to."""
    clients: tuple[int, ...]
    start_s: float


@dataclass
class Finished:
    """A job whose replies are in and whose update (if any) has been applied."""

    plan: Plan
    status: str
    """ok, or quorum_missed when too few replies counted to aggregate."""
    end_s: float
    """When its last counted reply reached the server (simulated)."""
    ready_s: float
    """When the server was done with it: ``end_s`` plus its aggregation, if any."""
    updates: list[Update] = field(default_factory=list)
    """The accepted updates, decoded (for policies that collect them)."""
    sent: Arrays = field(default_factory=dict)
    """The weights the job's clients were sent."""
    staleness: int = 0
    """Updates its weight set received between the job's sending and its replies."""


@dataclass(frozen=True)
class RoundEnd:
    """A round of the records: the weight sets it covers and its span on the simulated clock."""

    round: int
    weight_sets: tuple[int, ...]
    start_s: float
    end_s: float
    evaluate_clients: bool = True
    """Whether clients evaluate the weight sets on their own data after it."""


@dataclass(frozen=True)
class Aggregation:
    """An aggregation a collecting policy asks the engine to run on its executor."""

    weight_set: int
    fn: Callable[..., Arrays]
    """``fn(updates, base=weights)``: the set's new weights from the updates and its
    weights when the aggregation ends (so two steps in a row build on each other)."""
    updates: list[Update]
    start_s: float
    """When the server asks for it on the simulated clock."""


class Server(Protocol):
    """What a policy may read of the engine."""

    cfg: Config

    @property
    def now(self) -> float:
        """The simulated time of the event being handled: jobs planned now start then."""
        ...

    @property
    def num_clients(self) -> int:
        """The population's size."""
        ...

    def sample(self, server_round: int, count: int, rng: np.random.Generator) -> list[int]:
        """``count`` clients online in ``server_round``, uniformly at random, in O(count)."""
        ...

    def free_pool(self, server_round: int, rng: np.random.Generator) -> list[int]:
        """Online clients in no job in flight, sorted: all of them in a small population,
        a uniform random sample of them in a large one."""
        ...

    def sizes(self, clients: Sequence[int]) -> dict[int, int]:
        """Examples each of ``clients`` holds (the ``balanced`` group policy)."""
        ...

    def weights(self, weight_set: int) -> Arrays:
        """A weight set's current weights."""
        ...

    def losses(self) -> tuple[float, ...]:
        """Each weight set's latest server test loss (NaN before its first)."""
        ...

    def set_weights(self, weight_set: int, arrays: Arrays) -> None:
        """Replace a weight set's weights (merging)."""
        ...

    @property
    def statistics(self) -> frozenset[str]:
        """Names of the weights that are running statistics, not parameters (batch norm's)."""
        ...


class Policy(Protocol):
    """A strategy: the questions the engine asks it."""

    num_weight_sets: int
    aggregates_each_group: bool
    """True: every job's accepted updates are aggregated on their own with
    :attr:`aggregator` as soon as its replies are in (groups of one round
    aggregate while others still train). False: :meth:`collect` decides."""
    checkpointable: bool
    """Whether the run can be checkpointed and resumed (between rounds, no job in flight)."""

    @property
    def aggregator(self) -> AggregateFn:
        """Updates -> weights, run on the executor (must pickle for Ray)."""
        ...

    def train_loss(self, replies: list[tuple[float, float]]) -> float:
        """A round's training loss from ``(examples, loss)`` per aggregated reply."""
        ...

    def plan(self, server: Server) -> list[Plan]:
        """Jobs to send now (called at the start and after every finished job)."""
        ...

    def finished(self, job: Finished, server: Server) -> RoundEnd | None:
        """Note a finished job (its update applied, or for collecting policies, its
        replies in); return the round it closes, if any."""
        ...

    def collect(self, job: Finished, server: Server) -> Aggregation | None:
        """For policies that do not aggregate each group: absorb a job's updates."""
        ...

    def stepped(self, weight_set: int, ready_s: float, server: Server) -> RoundEnd | None:
        """A collected aggregation is applied at ``ready_s``; return the round it closes."""
        ...

    def merge(self, end: RoundEnd, server: Server) -> Arrays | None:
        """Merged weights to evaluate after ``end`` (None: no merge)."""
        ...

    def done(self) -> bool:
        """Whether the run is over."""
        ...

    def records_expected(self) -> int:
        """How many rounds the records will hold (for progress displays)."""
        ...

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints (between rounds)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        ...


def weighted_train_loss(replies: list[tuple[float, float]]) -> float:
    """Mean of the clients' losses weighted by their example counts (NaN for none).

    Flower's weighted mean, the one FedAvg reports, so one weight set's training
    loss is FedAvg's to the bit.
    """
    if not sum(n for n, _ in replies):
        return float("nan")
    return flower_metric_mean(replies)

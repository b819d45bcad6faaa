"""What the engine keeps of each weight set and each job while a run goes on."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pwfl.aggregation import Arrays, flower_metric_mean
from pwfl.engine.messaging import Evaluation
from pwfl.ledger import OK, Try
from pwfl.strategies.base import Plan, RoundEnd

EvaluateFn = Callable[[Arrays], dict[str, float]]
"""The server's evaluation of one set of weights: ``accuracy`` and ``loss`` on its test
set, ``val_accuracy`` and ``val_loss`` on its validation set (:mod:`pwfl.data`)."""


@dataclass
class Closing:
    """A round whose rows wait for its clients' evaluation replies (host time only:
    evaluation takes no simulated time)."""

    end: RoundEnd
    tallies: dict[int, Tally]
    asked: list[Evaluation]

    @property
    def settled(self) -> bool:
        return all(item.settled for item in self.asked)


@dataclass(frozen=True)
class SetModel:
    """What the server needs of one weight set's model when the sets differ
    (``[[weight_set]]``): its initial weights, its test, its training cost."""

    initial: Arrays
    evaluate: EvaluateFn
    flops_per_example: float


@dataclass
class WeightSet:
    """One global model: its weights, the updates it received, its accuracy history."""

    id: int
    arrays: Arrays
    rounds_trained: int = 0
    history: list[float] = field(default_factory=list)
    val_loss: float = math.nan
    """Its latest server validation loss (the loss-aware group policy reads it: a
    choice made from the test loss would tune the runs to their own test set)."""


@dataclass
class Job:
    """A planned job on its way: its tries, and once the server stops waiting, its outcome."""

    id: int
    plan: Plan
    sent: Arrays
    version: int
    """How many updates its weight set had received when it was sent."""
    staleness: int = 0
    """Updates its weight set received between its sending and its replies."""
    tries: list[Try] = field(default_factory=list)
    waiting: set[int] = field(default_factory=set)
    """Clients whose outcome the server still waits for."""
    end_s: float | None = None
    status: str = OK
    events: list[int] = field(default_factory=list)
    """Tokens of its deadline and timeout on the simulated clock."""

    @property
    def weight_set(self) -> int:
        return self.plan.weight_set

    def counted(self) -> list[Try]:
        """The tries whose replies count, in client order."""
        return sorted((t for t in self.tries if t.status == OK), key=lambda t: t.client)

    def first_tries(self) -> int:
        return sum(1 for t in self.tries if t.attempt == 0)


@dataclass
class Tally:
    """What one weight set did since its last round of the records: the jobs the
    round records and the server's aggregations for it."""

    start_s: float = math.inf
    end_s: float = 0.0
    ready_s: float = 0.0
    aggregate_s: float = 0.0
    aggregate_wall_s: float = 0.0
    updated: bool = False
    num_sent: int = 0
    clients: list[dict[str, Any]] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)

    def add_job(self, job: Job) -> None:
        """Count a job the server stopped waiting for, its tries' rows included."""
        assert job.end_s is not None
        self.start_s = min(self.start_s, job.plan.start_s)
        self.end_s = max(self.end_s, job.end_s)
        self.num_sent += job.first_tries()
        self.clients += [t.row(job.plan.start_s) for t in job.tries]

    def add_busy(self, start_s: float, end_s: float, wall_s: float) -> None:
        """Count an aggregation's span on a server core and its host time."""
        self.busy.append((start_s, end_s))
        self.aggregate_s += end_s - start_s
        self.aggregate_wall_s += wall_s
        self.ready_s = max(self.ready_s, end_s)


@dataclass
class RunResult:
    """What a finished (or stopped) run hands back to its caller."""

    weight_sets: dict[str, Arrays]
    stopped: str = ""
    """Why the run stopped early (empty when it ran all its rounds)."""


def train_loss(rows: Sequence[dict[str, Any]]) -> float:
    """A round's training loss from the ``clients.csv`` rows of its aggregated replies.

    One formula for every strategy: Flower's example-weighted metric mean
    (``aggregate_metricrecords``, as Flower's FedAvg reports it), over the replies
    in client order (then start time), so the float sum never depends on the order
    in which replies arrived or policies listed them.
    """
    replies = sorted((r["client"], r["sim_start_s"], r["num_examples"], r["loss"]) for r in rows)
    return flower_metric_mean([(n, loss) for _, _, n, loss in replies])

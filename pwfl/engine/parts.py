"""What the engine's parts share: the run's state, declared once for every part.

The engine (:class:`pwfl.engine.loop.Engine`) is cut by concern into parts, one
module each (events, the server's aggregations, the round's records,
checkpoints); each part is a class whose methods work on the state declared
here, and the engine is all of them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.serverapp import Grid

from pwfl.aggregation import Executor, Update
from pwfl.callbacks import Callback
from pwfl.clock import Simulation
from pwfl.config import Config
from pwfl.devices import ClientProfile
from pwfl.engine.jobs import Closing, EvaluateFn, Job, SetModel, Tally, WeightSet
from pwfl.engine.messaging import Messenger
from pwfl.ledger import Try
from pwfl.population import Population
from pwfl.quorum import QuorumWatch
from pwfl.stragglers import StragglerTracker
from pwfl.strategies.base import Policy, RoundEnd
from pwfl.strategies.server_optimizer import ServerOptimizer
from pwfl.transport import NodeBinding


class Parts:
    """The state every part of the engine reads and writes (set by the engine)."""

    cfg: Config
    label: str
    policy: Policy
    grid: Grid
    population: Population
    nodes: NodeBinding
    evaluate: EvaluateFn
    executor: Executor
    profiles: Mapping[int, ClientProfile]
    callbacks: list[Callback]
    statistics: frozenset[str]
    flops_per_example: float
    set_models: Sequence[SetModel]
    tracker: StragglerTracker
    costs: list[Any]
    """What each weight set's work costs a client, as the tracker names it."""
    optimizers: list[ServerOptimizer | None]
    watch: QuorumWatch
    sets: list[WeightSet]
    sim: Simulation
    messenger: Messenger
    checkpoint_round: int
    jobs: list[Job]
    """Jobs the server still waits for, or whose records wait for their round's end."""
    next_job: int
    dispatches: dict[tuple[int, int, int], int]
    """Jobs sent so far per (round, client, weight set)."""
    free_at: dict[int, float]
    busy: set[int]
    tallies: dict[int, Tally]
    unfilled: dict[int, int]
    """Per round: places of its sample no online client was found for."""
    wall_before: float
    run_started: float
    last_wall: dict[int, float]
    closing: Closing | None
    """The round whose closing waits for its clients' evaluations, if any."""
    norms: dict[tuple[int, int], float]
    """(client, weight set) -> its latest counted update's norm (variance-reduced)."""

    @property
    def now(self) -> float:
        return self.sim.now

    def job(self, job_id: int) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    # Implemented by the parts; declared here so each part can call the others.
    def complete(self, job: Job) -> None:
        raise NotImplementedError

    def aggregation_done(self, event: Any) -> None:
        raise NotImplementedError

    def decode(self, job: Job, tries: list[Try]) -> list[Update]:
        raise NotImplementedError

    def close_round(self, end: RoundEnd) -> None:
        raise NotImplementedError

    def finish_round(self) -> None:
        raise NotImplementedError

    def resolve(self, attempt: Try, status: str, release: bool = True) -> None:
        raise NotImplementedError

    def give_up(self, attempt: Try, status: str) -> None:
        raise NotImplementedError

    def check_complete(self, attempt: Try) -> None:
        raise NotImplementedError

    def schedule(self, attempt: Try, at: float, event: Any) -> None:
        raise NotImplementedError

    def train_config(self, weight_set: int) -> dict[str, Any]:
        raise NotImplementedError

    def server_evaluate(self, weight_set: int, arrays: Any) -> dict[str, float]:
        raise NotImplementedError

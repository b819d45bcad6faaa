"""What a strategy is to the round engine: a policy it asks, with no loop of its own.

The engine (:mod:`pwfl.engine`) owns the round: it sends jobs, collects the
replies with retries, applies the quorum rule, runs the aggregations on the
executor and prices them on the server's cores, applies the server optimiser,
evaluates, advances the clocks, writes the records and calls the callbacks. A
policy (:class:`Policy`, whose defaults it overrides) answers its questions:

* :meth:`Policy.plan`: which jobs to send now (a *job* is one weight set sent
  to one group of clients at a simulated time), i.e. which clients, how they
  form groups, which weight set each group trains and when each group is sent;
* :meth:`Policy.aggregations`: a job's replies are in; which aggregations follow
  (one per group for PWFL, one per full buffer for FedBuff, one per update for
  FedAsync);
* :meth:`Policy.finished` and :meth:`Policy.aggregated`: a job is done, an
  aggregation nobody waits for is applied; does a round of the records end?
* :meth:`Policy.merge`: whether the weight sets are merged after a round.

Policies see the engine through :class:`Server` and never import the
transport (Flower) or the executor (Ray): they work on client ids, simulated
times and NumPy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pwfl.aggregation import AggregateFn, Arrays, Update, weighted_mean
from pwfl.config import Config, num_sampled, parse_set_weights, strategy_settings
from pwfl.errors import PwflError
from pwfl.partition import GroupContext
from pwfl.quorum import OK

MAX_PERIODS = 100_000
"""Online periods a policy without a barrier looks ahead for an online client."""


@dataclass(frozen=True)
class Plan:
    """A job to send: weight set ``weight_set`` to ``clients`` at simulated time ``start_s``."""

    weight_set: int
    round: int
    """The round of the records this job belongs to."""
    clients: tuple[int, ...]
    start_s: float
    epochs: tuple[float, ...]
    """The local epochs each of ``clients`` is asked to run, in their order: what
    :meth:`Server.local_epochs` planned at the moment the policy's rule names."""


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
    job: int = -1
    """The job's id (what a collecting policy names in :attr:`Aggregation.sources`)."""


@dataclass(frozen=True)
class RoundEnd:
    """A round of the records: the weight sets it covers and its span on the simulated clock."""

    round: int
    weight_sets: tuple[int, ...]
    start_s: float
    end_s: float
    evaluate_clients: bool = True
    """Whether clients evaluate the weight sets on their own data after it."""
    last: bool = False
    """Whether it is the last round of its weight sets while the run goes on (a FedAST
    task that has taken its last step): their jobs still in flight are given up, their
    clients freed, and recorded in it as unused."""


@dataclass(frozen=True)
class Aggregation:
    """An aggregation a policy asks the engine to run on its executor."""

    weight_set: int
    fn: Callable[[list[Update]], Arrays]
    """``fn(updates)``: the set's new weights (must pickle for a Ray executor)."""
    updates: list[Update]
    sources: tuple[int, ...]
    """The job each of ``updates`` came from, in the same order: the engine marks
    exactly those replies as aggregated."""
    waits: bool = True
    """True: the set's weights change when the aggregation ends on its server core
    (a group's aggregation, which its round waits for), and the server optimiser, if
    any, is applied to it. False: they change at once (a server step taken when a
    buffer fills, which is the server update itself); its time on a core is recorded,
    and nobody waits for it."""


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

    def free_pool(self, at: float, rng: np.random.Generator) -> list[int]:
        """Clients online at simulated time ``at`` in no job in flight, sorted: all of
        them in a small population, a uniform random sample of them in a large one."""
        ...

    def next_period_s(self, at: float) -> float:
        """When the online period after the one holding ``at`` starts: the next time
        clients offline at ``at`` can be online (``clients.online_period_s``)."""
        ...

    def in_flight(self) -> int:
        """How many clients are in a job the server still waits for."""
        ...

    def sizes(self, clients: Sequence[int]) -> dict[int, int]:
        """Examples each of ``clients`` holds (the ``balanced`` group policy)."""
        ...

    def weights(self, weight_set: int) -> Arrays:
        """A weight set's current weights."""
        ...

    def local_epochs(self, weight_set: int, clients: Sequence[int]) -> tuple[float, ...]:
        """The local epochs load balancing asks of each of ``clients`` training
        ``weight_set``, planned from the round-trip estimates as they stand now.

        A policy calls it once for each job's work, at the moment its rule says
        that work is decided (a round's start, a set's round start, a dispatch),
        and puts the answer in the job's :class:`Plan`.
        """
        ...

    def losses(self) -> tuple[float, ...]:
        """Each weight set's latest server validation loss (NaN before its first)."""
        ...

    def holds(self, client: int, weight_set: int) -> bool:
        """Whether ``client`` holds the data of ``weight_set``'s task
        (``data.participation``): a client is only ever asked to train a task it holds."""
        ...

    def update_norms(self) -> Mapping[tuple[int, int], float]:
        """(client, weight set) -> the norm of the latest update of that client for that
        set the server counted (kept for the variance-reduced group policy only)."""
        ...

    def set_weights(self, weight_set: int, arrays: Arrays) -> None:
        """Replace a weight set's weights (merging)."""
        ...

    @property
    def statistics(self) -> frozenset[str]:
        """Names of the weights that are running statistics, not parameters (batch norm's)."""
        ...


class Policy:
    """A strategy: the rules the round engine asks about, with defaults to override.

    A policy writes only what it decides: :meth:`plan` (which jobs to send now)
    and :meth:`done` always; the rest has the default of a strategy that
    aggregates each job's replies on their own with :attr:`aggregate` and keeps
    no rounds of its own. Its settings are checked by :meth:`check_config` before
    any process starts.
    """

    name: str = ""
    """The strategy's name (``strategy.name``), its key in the registry."""
    Settings: type | None = None
    """A frozen dataclass of the strategy's own keys (its ``[strategy.<name>]`` table),
    each with its default, range and docstring; None when it has none."""
    num_weight_sets: int = 1
    weight_set_tables: bool = False
    """Whether ``[[weight_set]]`` tables may give its weight sets settings of their own."""
    groups_by_policy: bool = True
    """Whether ``strategy.group_policy`` forms its groups (FedAST gives slots its own way)."""
    rounds_are_steps: bool = False
    """Whether each round of the records is a server step that consumes replies sent
    before earlier steps (FedBuff, FedAsync) rather than the jobs sent for it (what
    the records' checks, :mod:`pwfl.invariants`, expect of its rows)."""
    updates_per_step: int = 0
    """For a policy whose rounds are server steps of single-client updates: the updates
    one step takes, the unit of the engine's quorum watch (a run stops after
    ``faults.max_missed_rounds`` x this many failed updates in a row); 0: the watch
    counts rounds that missed quorum."""
    aggregate: AggregateFn = staticmethod(weighted_mean)
    """Updates -> weights, what the default :meth:`aggregations` runs (must pickle)."""
    each_update: bool = False
    """Whether its aggregations weigh each client's update on its own (a buffered step),
    so that a node's mean of several (``simulation.node_aggregation``) cannot stand
    for them; a policy that overrides :meth:`aggregations` says so."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.settings: Any = self.settings_of(cfg)
        """The strategy's own settings (an instance of :attr:`Settings`), or None."""

    @classmethod
    def settings_of(cls, cfg: Config) -> Any:
        """The strategy's own settings from ``cfg`` (None when it declares none)."""
        if cls.Settings is None:
            return None
        return strategy_settings(cls.Settings, cls.name, cfg.strategy.table(cls.name))

    # --- what it decides ---------------------------------------------------------------

    def plan(self, server: Server) -> list[Plan]:
        """Jobs to send now (asked at the start and after every event)."""
        raise NotImplementedError

    def aggregations(self, job: Finished, server: Server) -> list[Aggregation]:
        """The aggregations a finished job's replies lead to (the engine runs them).

        Default: one aggregation of the job's accepted updates, which the job waits for,
        unless too few replies counted.
        """
        if job.status != OK:
            return []
        return [Aggregation(job.plan.weight_set, self.aggregate, job.updates, (job.job,))]

    def finished(self, job: Finished, server: Server) -> RoundEnd | None:
        """A job is done (its waited-for aggregation applied, if any): the round it
        closes, if any."""
        return None

    def aggregated(
        self, aggregation: Aggregation, ready_s: float, server: Server
    ) -> RoundEnd | None:
        """An aggregation that nobody waits for is applied (its core is done at
        ``ready_s``): the round it closes, if any."""
        return None

    def merge(self, end: RoundEnd, server: Server) -> Arrays | None:
        """Merged weights to evaluate after ``end`` (None: no merge)."""
        return None

    def train_config(self, weight_set: int) -> dict[str, Any]:
        """What the policy adds to each training message's config for ``weight_set``
        (a local-training step and its options, for instance)."""
        return {}

    def done(self) -> bool:
        """Whether the run is over."""
        raise NotImplementedError

    def records_expected(self) -> int:
        """How many rounds the records will hold (for progress displays)."""
        return self.cfg.strategy.num_rounds

    # --- checkpoints ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints (taken at the end of any round of the records)."""
        return {}

    def state_arrays(self) -> Arrays:
        """Arrays the state holds (a buffer of updates), saved beside :meth:`state`."""
        return {}

    def load_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        """Restore what :meth:`state` and :meth:`state_arrays` returned."""

    # --- its rules -----------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Raise :class:`~pwfl.errors.ConfigError` (one line) for settings this strategy
        cannot run."""

    @classmethod
    def clients_in_flight(cls, cfg: Config) -> int:
        """How many clients train at once at most (the simulation's pool size)."""
        s = cfg.strategy
        return num_sampled(cfg.data.num_clients, s.fraction_train, s.min_train_nodes)


def group_context(cfg: Config, server: Server, server_round: int) -> GroupContext:
    """What ``strategy.group_policy`` may know when it forms a group in ``server_round``."""
    s = cfg.strategy
    return GroupContext(
        server_round,
        server.losses(),
        s.alpha,
        parse_set_weights(s.set_weights, s.k),
        server.update_norms() if s.group_policy == "variance-reduced" else {},
        server.holds if partial_participation(cfg) else None,
    )


def partial_participation(cfg: Config) -> bool:
    """Whether some weight set's task is held by only some clients (``data.participation``
    below 1 in a ``[[weight_set]]`` table)."""
    return any(cfg.for_set(ws).data.participation < 1 for ws in range(len(cfg.weight_set)))


def free_when(
    server: Server,
    at: float,
    rng: np.random.Generator,
    taken: set[int],
    choose: Callable[[list[int]], list[int]],
) -> tuple[float, list[int]] | None:
    """When a job due at ``at`` (or now, if later) can start, and the clients it gets.

    For policies without a round barrier (async PWFL, FedBuff, FedAsync). ``choose`` picks
    the job's clients from those free and online (not in ``taken``, the clients
    this plan already gave a job); it may pick none, when none of them may train
    the job (a group policy that names a set's clients). At ``at`` itself when it
    picks some. When it picks none but some client is busy, None: the policy
    waits for a reply to free one. When every client is free and it picks none
    (every client, or every one it may pick, is offline), at the start of the
    first later online period in which it picks some: the draws of who is online
    change only from one period to the next.
    """
    at = max(at, server.now)
    for _ in range(MAX_PERIODS):
        free = [c for c in server.free_pool(at, rng) if c not in taken]
        picked = choose(free) if free else []
        if picked:
            return at, picked
        if server.in_flight() or taken:
            return None
        at = server.next_period_s(at)
    raise PwflError(
        f"no client was online in {MAX_PERIODS} online periods; lower clients.offline_prob"
    )

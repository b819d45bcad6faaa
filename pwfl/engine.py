"""The round engine: the one loop every strategy runs in.

The engine owns everything a round does: it sends the jobs a policy plans
(a *job* is one weight set sent to one group of clients), collects the replies
and retries the failed ones, places every transfer, computation and
aggregation on the simulated clock (:mod:`pwfl.clock`), applies the quorum
rule, aggregates, applies the server optimiser, evaluates the weight sets,
builds the records and calls the callbacks. Strategies (:mod:`pwfl.strategies`)
are policies it asks what to send and when a round ends; ``fedavg``, ``pwfl``,
``pwfl-sequential``, async PWFL and FedBuff are policies of this one loop.

Two clocks run side by side. On the host, a job's messages are pushed as soon
as it is planned and the replies are pulled as they come, so clients train
concurrently. On the simulated clock, every message goes through events
(its download starts, ends; the client computes; its upload ends; the reply
arrives), processed strictly in simulated-time order: an event that needs a
client's reply (what it computed, how much it sends back, whether it failed)
waits for the host to get it. So the order of events, and every choice a
policy makes from them, follows simulated time alone, never the order in
which this host happened to run the clients. A job is aggregated when the
server stops waiting for it on the simulated clock, from exactly the replies
counted then; a reply the host never gets within ``simulation.reply_timeout_s``
(host seconds) is recorded as ``lost``.
"""

from __future__ import annotations

import functools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from pwfl.aggregation import Arrays, Executor, Timed, Update, flower_metric_mean
from pwfl.callbacks import Callback, RoundRecord
from pwfl.checkpoint import Checkpoint
from pwfl.clock import (
    ClientTiming,
    Simulation,
    aggregation_bytes,
    aggregation_seconds,
    busy_time,
    compute_seconds,
)
from pwfl.config import Config
from pwfl.devices import ClientProfile
from pwfl.errors import PwflError
from pwfl.ledger import (
    FAILED,
    LATE,
    LOST,
    OK,
    RETRIED,
    TIMEOUT,
    UNUSED,
    Try,
    bytes_moved,
    error_reason,
)
from pwfl.partition import sample_clients, split_complementary
from pwfl.population import Population
from pwfl.quorum import QUORUM_MISSED, QuorumLost, QuorumWatch, has_quorum
from pwfl.schema import CLIENTS, MERGED, ROUNDS, SERVER
from pwfl.seeding import rng_for
from pwfl.stragglers import StragglerTracker, cost_of
from pwfl.strategies.base import Aggregation, Finished, Plan, Policy, RoundEnd
from pwfl.strategies.server_optimizer import ServerOptimizer
from pwfl.transport import (
    CLIENT,
    CONFIG,
    METRICS,
    STATE,
    WEIGHT_KEY,
    NodeBinding,
    client_message,
    retry_config,
    to_numpy,
    to_record,
    train_update,
)

POLL_S = 0.005  # host seconds between two pulls while an event waits for a reply

EvaluateFn = Callable[[Arrays], dict[str, float]]
"""The server's evaluation of one set of weights: ``accuracy`` and ``loss`` on its test
set, ``val_accuracy`` and ``val_loss`` on its validation set (:mod:`pwfl.data`)."""


@dataclass(frozen=True)
class SetModel:
    """What the server needs of one weight set's model when the sets differ
    (``[[weight_set]]``): its initial weights, its test, its training cost."""

    initial: Arrays
    evaluate: EvaluateFn
    flops_per_example: float


CONNECT_TIMEOUT_S = 60.0
"""How long the server waits for the nodes it needs before saying which are missing."""
POOL_LIMIT = 10_000
"""Populations up to this size are listed in full when a policy draws a group from
the free clients (async, FedBuff); a larger one offers a uniform sample this big."""


def connect(grid: Grid, cfg: Config, pool_size: int = 0) -> NodeBinding:
    """Find the nodes that will run the clients (before the first round).

    Node binding: every node is asked for its partition id and example count,
    and there must be one node per client (``data.num_clients``). Pool binding:
    the nodes are a pool, asked only to get ready (each loads its libraries and
    warms PyTorch up, so that this one-off work is start-up, not the first
    round's compute); ``pool_size`` nodes are waited for when known, else the
    number connected once it stops growing.

    Raises
    ------
    PwflError
        When the nodes needed have not connected within ``CONNECT_TIMEOUT_S``:
        one line naming how many did, instead of a silent wait.
    """
    pool = cfg.simulation.client_binding == "pool"
    expected = pool_size if pool else cfg.data.num_clients
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    seen, stable_since = -1, time.monotonic()
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) != seen:
            seen, stable_since = len(node_ids), time.monotonic()
        if expected and len(node_ids) >= expected:
            break
        if not expected and node_ids and time.monotonic() - stable_since > 2.0:
            break
        if time.monotonic() > deadline:
            raise PwflError(_missing_nodes(cfg, pool, len(node_ids), expected))
        time.sleep(0.2)
    query = {"binding": "pool" if pool else "node"}
    messages = [
        Message(
            content=RecordDict({CONFIG: ConfigRecord(query)}),
            message_type=MessageType.QUERY,
            dst_node_id=node,
        )
        for node in node_ids
    ]
    answered = [r for r in grid.send_and_receive(messages, timeout=600) if not r.has_error()]
    if not answered:
        raise PwflError("no node answered the server's first query; rerun with --verbose")
    if pool:
        return NodeBinding(pool=True, nodes=sorted(r.metadata.src_node_id for r in answered))
    binding = NodeBinding(pool=False)
    for reply in answered:
        info = reply.content[CLIENT]
        client = int(info["partition-id"])
        binding.node_of[client] = reply.metadata.src_node_id
        binding.sizes[client] = int(info["num-examples"])
    return binding


def _missing_nodes(cfg: Config, pool: bool, connected: int, expected: int) -> str:
    if pool:
        return (
            f"{connected} of the {expected or 'at least 1'} nodes of the client pool connected "
            f"within {CONNECT_TIMEOUT_S:.0f} s; check the SuperNodes' logs"
        )
    return (
        f"{connected} SuperNodes connected within {CONNECT_TIMEOUT_S:.0f} s, but node binding "
        f"needs one per client (data.num_clients = {cfg.data.num_clients}): start more "
        "SuperNodes, or let a few nodes run every client with "
        "simulation.client_binding = pool"
    )


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


# Events on the simulated clock: what happens, to which try or job.
@dataclass(frozen=True)
class _Start:
    attempt: Try


@dataclass(frozen=True)
class _Downloaded:
    attempt: Try


@dataclass(frozen=True)
class _Computed:
    attempt: Try


@dataclass(frozen=True)
class _Uploaded:
    attempt: Try


@dataclass(frozen=True)
class _Arrived:
    attempt: Try


@dataclass(frozen=True)
class _Failed:
    attempt: Try


@dataclass(frozen=True)
class _GiveUp:
    job: Job
    status: str
    """late (the deadline) or timeout (faults.round_timeout_s)."""


@dataclass(frozen=True)
class _Aggregated:
    job: Job
    start_s: float
    arrays: Arrays
    wall_s: float = 0.0


@dataclass
class Tally:
    """What one weight set's finished jobs did since its last round of the records."""

    start_s: float = math.inf
    end_s: float = 0.0
    ready_s: float = 0.0
    aggregate_s: float = 0.0
    aggregate_wall_s: float = 0.0
    updated: bool = False
    num_sent: int = 0
    clients: list[dict[str, Any]] = field(default_factory=list)
    busy: list[tuple[float, float]] = field(default_factory=list)


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


class Engine:
    """Runs one experiment's rounds for a policy on a Flower grid.

    Parameters
    ----------
    cfg
        The experiment.
    label, policy
        The run's name in the records, and the strategy that plans its jobs.
    grid, population, nodes
        Where messages go, the clients, and the nodes that run them.
    evaluate
        Server-side evaluation of one weight set on the held-out test set.
    executor
        Where aggregations run on the host (threads, Ray tasks or serially).
    profiles
        Each client's simulated device and link.
    callbacks
        Receive each round's records (CSV writer, checkpoints, progress bar).
    statistics
        Names of the model's running statistics (batch norm's means, variances and
        counters), which some strategies treat apart from its parameters.
    flops_per_example
        The model's training FLOPs per example (the modelled clock's compute).
    """

    def __init__(
        self,
        cfg: Config,
        label: str,
        policy: Policy,
        grid: Grid,
        population: Population,
        nodes: NodeBinding,
        evaluate: EvaluateFn,
        executor: Executor,
        profiles: dict[int, ClientProfile],
        callbacks: Sequence[Callback] = (),
        statistics: frozenset[str] = frozenset(),
        flops_per_example: float = 0.0,
        set_models: Sequence[SetModel] = (),
    ):
        self.cfg = cfg
        self.label = label
        self.policy = policy
        self.grid = grid
        self.population = population
        self.nodes = nodes
        self.evaluate = evaluate
        self.executor = executor
        self.profiles = profiles
        self.callbacks = list(callbacks)
        self.statistics = statistics
        """Names of the weights that are running statistics, not parameters."""
        self.flops_per_example = flops_per_example
        self.set_models = list(set_models)
        """One per weight set when the sets' models or settings differ, else empty."""
        if cfg.clock.compute == "modelled" and flops_per_example <= 0:
            raise ValueError("the modelled clock needs the model's FLOPs per example")
        self.tracker = StragglerTracker(cfg.stragglers, cfg.train.local_epochs)
        self._costs = [cost_of(cfg.for_set(ws)) for ws in range(policy.num_weight_sets)]
        """What each weight set's work costs a client, as the tracker names it."""
        set_strategies = [cfg.for_set(ws).strategy for ws in range(policy.num_weight_sets)]
        self.optimizers: list[ServerOptimizer | None] = (
            [ServerOptimizer(s) if s.server_opt != "none" else None for s in set_strategies]
            if any(s.server_opt != "none" for s in set_strategies)
            else []
        )
        self.watch = QuorumWatch(cfg.faults.max_missed_rounds, policy.num_weight_sets)
        self.sets: list[WeightSet] = []
        self.checkpoint_round = 0 if cfg.checkpoint.every > 0 and policy.checkpointable else -1
        """The round of the newest checkpoint, -1 when none are written (clients
        prune the state files that no checkpoint can need)."""
        s = cfg.server
        self.sim = Simulation(s.up_mbps, s.down_mbps, s.cores)
        self._aggregate = Timed(policy.aggregator)
        self._jobs: list[Job] = []
        self._next_job = 0
        self._dispatches: dict[tuple[int, int, int], int] = {}
        """Jobs sent so far per (round, client, weight set)."""
        self._try_of: dict[str, Try] = {}
        self._outbox: deque[Try] = deque()
        """Tries waiting for a free pool node."""
        self._states: dict[tuple[int, int], dict[str, Any]] = {}
        """Pool binding: what each (client, weight set) kept from its last counted round."""
        self._free_at: dict[int, float] = {}
        self._busy: set[int] = set()
        self._tallies: dict[int, Tally] = {}
        self._buffered: list[Job] = []
        """Finished jobs whose updates wait in a server step's buffer (FedBuff)."""
        self._unfilled: dict[int, int] = {}
        """Per round: places of its sample no online client was found for."""
        self._wall_before = 0.0  # host seconds spent before a resume
        self._run_started = 0.0
        self._last_wall: dict[int, float] = {}

    # --- what policies may read -------------------------------------------------------

    @property
    def now(self) -> float:
        """The simulated time of the event being handled."""
        return self.sim.now

    @property
    def num_clients(self) -> int:
        return self.population.num_clients

    def sample(self, server_round: int, count: int, rng: np.random.Generator) -> list[int]:
        """``count`` online clients for ``server_round``, uniformly at random (seeded by
        ``rng``); fewer when too few are online, the shortfall kept for the records
        (``num_unfilled``)."""
        picked = self.population.sample(server_round, count, rng)
        wanted = min(count, self.num_clients)
        self._unfilled[server_round] = self._unfilled.get(server_round, 0) + wanted - len(picked)
        return picked

    def free_pool(self, at: float, rng: np.random.Generator) -> list[int]:
        """The clients online at simulated time ``at`` in no job in flight: all of them
        in a population of at most ``POOL_LIMIT``, else a uniform random
        ``POOL_LIMIT`` of them."""
        period = self.population.period_at(at)
        return self.population.eligible(period, sorted(self._busy), POOL_LIMIT, rng)

    def next_period_s(self, at: float) -> float:
        """When the online period after the one holding ``at`` starts (new online draws)."""
        return self.population.next_period_s(at)

    def in_flight(self) -> int:
        """How many clients are in a job the server still waits for."""
        return len(self._busy)

    def sizes(self, clients: Sequence[int]) -> dict[int, int]:
        return self.population.sizes(clients)

    def weights(self, weight_set: int) -> Arrays:
        return self.sets[weight_set].arrays

    def set_weights(self, weight_set: int, arrays: Arrays) -> None:
        self.sets[weight_set].arrays = arrays

    def version(self, weight_set: int) -> int:
        return self.sets[weight_set].rounds_trained

    def losses(self) -> tuple[float, ...]:
        """Each weight set's latest server validation loss (NaN before its first)."""
        return tuple(ws.val_loss for ws in self.sets)

    def local_epochs(self, weight_set: int, clients: Sequence[int]) -> tuple[float, ...]:
        """The local epochs to ask of each of ``clients`` training ``weight_set``, planned now.

        Load balancing's share of the shared epochs, from the estimates of what
        this set's work costs each client as they stand now, scaled to the set's
        own epochs (``epochs x own / shared``).
        """
        shares = self.tracker.plan(self._costs[weight_set], clients)
        own = self.cfg.for_set(weight_set).train.local_epochs
        # A set with the shared epochs gets the tracker's value itself: the product
        # below can move it by a rounding error, and a run without tables would differ.
        if own == self.tracker.base_epochs:
            return tuple(shares)
        return tuple(share * own / self.tracker.base_epochs for share in shares)

    # --- the loop ---------------------------------------------------------------------

    def run(self, initial: Arrays, resume: Checkpoint | None = None) -> RunResult:
        """Run the policy's rounds from ``initial`` (or from ``resume``'s checkpoint)."""
        self.sets = [
            WeightSet(i, dict(self.set_models[i].initial if self.set_models else initial))
            for i in range(self.policy.num_weight_sets)
        ]
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
                upcoming = self.sim.peek()
                if upcoming is None:
                    # A job without clients ends as it is sent, its round with it: the
                    # policy may plan the next one now.
                    plans = self.policy.plan(self)
                    if not plans:
                        raise RuntimeError(f"{self.label}: nothing in flight and nothing planned")
                    self._launch(plans)
                    continue
                if not self._ready(upcoming[1]):
                    time.sleep(POLL_S)
                    continue
                self._handle(self.sim.pop()[1])
                self._launch(self.policy.plan(self))
        except QuorumLost as err:
            stopped = str(err)
        return RunResult({str(ws.id): ws.arrays for ws in self.sets}, stopped)

    def _launch(self, plans: list[Plan]) -> None:
        """Send every planned job's messages now (the host starts the clients at once, as
        far as nodes are free) and place its clients' tries on the simulated clock."""
        for plan in plans:
            if plan.start_s < self.now - 1e-9:
                raise ValueError(f"a job planned at {plan.start_s} s, before now ({self.now} s)")
            ws = self.sets[plan.weight_set]
            job = Job(self._next_job, plan, ws.arrays, ws.rounds_trained)
            self._next_job += 1
            record = to_record(ws.arrays)
            for client, epochs in zip(plan.clients, plan.epochs, strict=True):
                # A policy without rounds (FedBuff) can send one client two jobs in
                # one step: the n-th job of a (round, client, set) draws its own
                # batches, dropout and faults (n = 0 for every other strategy).
                repeat = self._dispatches.get((plan.round, client, plan.weight_set), 0)
                self._dispatches[plan.round, client, plan.weight_set] = repeat + 1
                config = {
                    **self._train_config(plan.weight_set),
                    "server-round": plan.round,
                    "weight-set": plan.weight_set,
                    "checkpoint-round": self.checkpoint_round,
                    "client-id": client,
                    "local-epochs": epochs,
                    "repeat": repeat,
                }
                attempt = Try(job.id, client, job.weight_set, plan.round, 0, epochs, record, config)
                job.tries.append(attempt)
                self._send(attempt)
                begin = max(plan.start_s, self._free_at.get(client, 0.0))
                self._schedule(attempt, begin, _Start(attempt))
            job.waiting = set(plan.clients)
            self._busy.update(plan.clients)
            deadline = self.cfg.stragglers.deadline_s
            if deadline and math.isfinite(deadline):
                job.events.append(self.sim.at(plan.start_s + deadline, _GiveUp(job, LATE)))
            timeout = self.cfg.faults.round_timeout_s
            if math.isfinite(timeout):
                job.events.append(self.sim.at(plan.start_s + timeout, _GiveUp(job, TIMEOUT)))
            self._jobs.append(job)
            if not plan.clients:
                self._complete(job)

    def _schedule(self, attempt: Try, at: float, event: Any) -> None:
        attempt.events.append(self.sim.at(at, event))

    def _send(self, attempt: Try) -> None:
        """Push a try's message to its node, or queue it until a pool node is free."""
        node = self.nodes.take(attempt.client)
        if node is None:
            self._outbox.append(attempt)
            return
        state = self._states.get((attempt.client, attempt.weight_set))
        message = client_message(
            node,
            attempt.arrays,
            attempt.config,
            MessageType.TRAIN,
            to_record(state) if state is not None else None,
        )
        (mid,) = self.grid.push_messages([message])
        attempt.message, attempt.message_id, attempt.node = message, mid, node
        attempt.pushed_at = time.monotonic()
        self._try_of[mid] = attempt

    def _poll(self) -> None:
        """Take the replies that are in, note the tries the host stopped waiting for
        (``simulation.reply_timeout_s``, host seconds), send what waits for a node."""
        waiting = list(self._try_of)
        if waiting:
            for reply in self.grid.pull_messages(waiting):
                record = self._try_of.pop(reply.metadata.reply_to_message_id, None)
                if record is not None:
                    record.reply = reply
                    self._release(record)
        limit = self.cfg.simulation.reply_timeout_s
        now = time.monotonic()
        for mid, record in list(self._try_of.items()):
            if now - record.pushed_at > limit:
                record.lost = True
                del self._try_of[mid]
                self._release(record)
        while self._outbox and self.nodes.has_free():
            self._send(self._outbox.popleft())

    def _release(self, attempt: Try) -> None:
        if attempt.node is not None:
            self.nodes.release(attempt.node)
            attempt.node = None

    def _ready(self, event: Any) -> bool:
        """Whether the host knows what the event needs: a downloaded try needs its reply."""
        if isinstance(event, _Downloaded):
            attempt = event.attempt
            return attempt.reply is not None or attempt.lost or attempt.resolved
        return True

    # --- events -------------------------------------------------------------------------

    def _handle(self, event: Any) -> None:
        now = self.now
        if isinstance(event, _Aggregated):
            self._aggregated(event)
            return
        if isinstance(event, _GiveUp):
            job = event.job
            if job.end_s is None:
                for attempt in job.tries:
                    if not attempt.resolved:
                        self._resolve(attempt, event.status)
                self._complete(job)
            return
        attempt = event.attempt
        if attempt.resolved:  # the server gave up on it before this event
            return
        profile = self.profiles[attempt.client]
        if isinstance(event, _Start):
            attempt.start_s = now
            self.sim.transfer(
                "up", attempt.key, attempt.bytes_down, profile.down_mbps, _Downloaded(attempt)
            )
        elif isinstance(event, _Downloaded):
            attempt.download_s = now - attempt.start_s
            if attempt.lost:  # the host has no reply: nothing to place on the clock
                self._resolve(attempt, LOST)
                self._check_complete(attempt)
                return
            if attempt.silent:
                return  # a hanging client: the server waits until the job's timeout
            assert attempt.reply is not None
            latency = profile.latency_ms / 1000
            if attempt.reply.has_error():
                self._schedule(attempt, now + latency, _Failed(attempt))
            else:
                attempt.compute_s = self._compute_seconds(attempt, profile)
                self._schedule(attempt, now + attempt.compute_s, _Computed(attempt))
        elif isinstance(event, _Computed):
            self.sim.transfer(
                "down", attempt.key, attempt.bytes_up, profile.up_mbps, _Uploaded(attempt)
            )
        elif isinstance(event, _Uploaded):
            attempt.upload_s = now - attempt.start_s - attempt.download_s - attempt.compute_s
            self._schedule(attempt, now + profile.latency_ms / 1000, _Arrived(attempt))
        elif isinstance(event, _Arrived):
            self._resolve(attempt, OK)
            timing = ClientTiming(
                attempt.download_s,
                attempt.compute_s,
                attempt.upload_s,
                attempt.end_s
                - attempt.start_s
                - attempt.download_s
                - attempt.compute_s
                - attempt.upload_s,
            )
            size = self.population.size(attempt.client)
            run = attempt.metric("examples-run", float(size))
            cost = self._costs[attempt.weight_set]
            self.tracker.observe(attempt.client, cost, timing, run / size if size else 1.0)
            self._check_complete(attempt)
        elif isinstance(event, _Failed):
            assert attempt.reply is not None
            attempt.error = error_reason(attempt.reply)
            assert attempt.message is not None
            config = retry_config(attempt.message, attempt.reply, self.cfg.faults.max_retries)
            job = self._job(attempt.job)
            if config is None or job.end_s is not None:
                self._resolve(attempt, FAILED)
                self._check_complete(attempt)
                return
            self._resolve(attempt, RETRIED, release=False)
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
            self._send(retry)
            self._schedule(retry, now, _Start(retry))

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

    def _resolve(self, attempt: Try, status: str, release: bool = True) -> None:
        """A try's outcome is known now: its client is free again unless it is retried.

        In pool binding the server keeps what the client keeps between its rounds
        (momentum, a personal layer), from its counted replies: a try given up on
        leaves the client's state as it was.
        """
        attempt.status = status
        if status == OK and self.nodes.pool and attempt.reply is not None:
            if STATE in attempt.reply.content:
                kept = to_numpy(attempt.reply.content[STATE])
                self._states[attempt.client, attempt.weight_set] = kept
        attempt.end_s = self.now
        if math.isnan(attempt.start_s):  # given up on before it could start
            attempt.start_s = self.now
        self.sim.cancel("up", attempt.key)
        self.sim.cancel("down", attempt.key)
        for token in attempt.events:
            self.sim.drop(token)
        if self._try_of.pop(attempt.message_id, None) is not None:
            self._release(attempt)
        if attempt in self._outbox:
            self._outbox.remove(attempt)
        if release:
            self._free_at[attempt.client] = self.now
            self._busy.discard(attempt.client)
            self._job(attempt.job).waiting.discard(attempt.client)

    def _check_complete(self, attempt: Try) -> None:
        job = self._job(attempt.job)
        if job.end_s is None and not job.waiting:
            self._complete(job)

    def _job(self, job_id: int) -> Job:
        return next(j for j in self._jobs if j.id == job_id)

    def _complete(self, job: Job) -> None:
        """The server stops waiting for the job: quorum, stragglers, then its aggregation,
        of exactly the replies counted now, handed to the aggregator now."""
        now = self.now
        job.end_s = now
        for token in job.events:
            self.sim.drop(token)
        counted = job.counted()
        sent = job.first_tries()
        job.status = OK if has_quorum(self.cfg.faults.quorum, sent, len(counted)) else QUORUM_MISSED
        for attempt in job.tries:
            attempt.straggler = self.tracker.is_straggler(
                attempt.client, self._costs[job.weight_set]
            )
        job.staleness = self.version(job.weight_set) - job.version
        for attempt in counted:
            attempt.staleness = job.staleness
        if self.policy.aggregates_each_group:
            if job.status != OK:
                self._tally(job)
                self._finish(job, now)
                return
            arrays, wall = self._submit(job, counted).result()
            self._tally(job)
            duration = self._server_seconds(job.weight_set, [t.bytes_up for t in counted], wall)
            start, end = self.sim.cores.run(now, duration)
            self.sim.at(end, _Aggregated(job, start, arrays, wall))
            return
        # A job is recorded with the server step that consumes its update: replies
        # that arrive at one moment can fill two buffers, each step its own round.
        self._buffered.append(job)
        updates = self._decode(job, counted) if job.status == OK else []
        finished = Finished(
            job.plan, job.status, now, now, updates, job.sent, job.staleness, job.id
        )
        aggregation = self.policy.collect(finished, self)
        self._forget(job)
        self.policy.finished(finished, self)
        if aggregation is not None:
            self._step(aggregation)

    def _submit(self, job: Job, tries: list[Try]) -> Any:
        """Hand the updates of ``tries`` to the aggregator on the executor; each try whose
        update is in that list (and only those) is marked ``aggregated``."""
        updates = self._decode(job, tries)
        for attempt in tries:
            attempt.aggregated = True
        return self.executor.submit(self._aggregate, updates)

    def _decode(self, job: Job, tries: list[Try]) -> list[Update]:
        mode = self.cfg.comm.compression
        updates = []
        for attempt in tries:
            assert attempt.reply is not None and attempt.answered
            updates.append(train_update(attempt.reply, job.sent, mode))
        return updates

    def _server_seconds(self, ws: int, payloads: list[int], wall: float) -> float:
        """The server's time for one aggregation of ``payloads`` (each update's bytes as it
        arrived), for a group and a server step alike: its host time on the measured
        clock, else its memory traffic, a compressed update decoded first."""
        if self.cfg.clock.compute == "measured":
            return wall
        model = sum(v.nbytes for v in self.sets[ws].arrays.values())
        compressed = self.cfg.comm.compression != "none"
        num_bytes = aggregation_bytes(payloads, model, compressed)
        return aggregation_seconds(num_bytes, self.cfg.server.memory_gbps)

    def _aggregated(self, event: _Aggregated) -> None:
        """A group's aggregation ends on its server core: the set's weights change now."""
        job = event.job
        now = self.now
        self._apply(job.weight_set, event.arrays, replaced=False)
        tally = self._tallies[job.weight_set]
        tally.busy.append((event.start_s, now))
        tally.aggregate_s += now - event.start_s
        tally.aggregate_wall_s += event.wall_s
        self._finish(job, now)

    def _step(self, aggregation: Aggregation) -> None:
        """A collecting policy's aggregation (a FedBuff server step), taken at once.

        Nguyen et al., AISTATS 2022, Algorithm 1: the server steps as soon as its
        buffer is full, so the weights change now and every job planned from now on
        (the client whose update filled the buffer included) is sent the stepped
        model. The step's time on a server core is recorded (server.csv,
        ``aggregate_s``, the round's end) but no client waits for it.
        """
        ws = aggregation.weight_set
        consumed, self._buffered = self._buffered, []
        by_id = {job.id: job for job in consumed}
        sources = [by_id[job_id] for job_id in aggregation.sources]
        used = [attempt for job in sources for attempt in job.counted()]
        if len(used) != len(aggregation.updates):
            raise RuntimeError("a server step's updates do not match the replies they came from")
        step = functools.partial(aggregation.fn, base=self.sets[ws].arrays)
        arrays, wall = self.executor.submit(Timed(step), aggregation.updates).result()
        for attempt in used:
            attempt.aggregated = True
        self._apply(ws, arrays, replaced=True)
        duration = self._server_seconds(ws, [t.bytes_up for t in used], wall)
        start, end_s = self.sim.cores.run(self.now, duration)
        end = self.policy.stepped(ws, end_s, self)
        for job in consumed:
            if end is not None:
                for attempt in job.tries:
                    attempt.round = end.round
            self._tally(job)
        tally = self._tallies.setdefault(ws, Tally())
        tally.busy.append((start, end_s))
        tally.aggregate_s += end_s - start
        tally.aggregate_wall_s += wall
        tally.ready_s = max(tally.ready_s, end_s)
        if end is not None:
            self._close_round(end)

    def _finish(self, job: Job, ready_s: float) -> None:
        """A group's update is applied (or skipped): tell the policy."""
        tally = self._tallies[job.weight_set]
        tally.ready_s = max(tally.ready_s, ready_s)
        self._forget(job)
        updates: list[Update] = []
        finished = Finished(
            job.plan, job.status, job.end_s, ready_s, updates, job.sent, job.staleness, job.id
        )
        end = self.policy.finished(finished, self)
        if end is not None:
            self._close_round(end)

    def _unused(self, server_round: int) -> list[dict[str, Any]]:
        """Rows of the updates the run ends without using (jobs still in flight, replies
        still in a server step's buffer): every message sent has its row."""
        rows = []
        for job in [*self._buffered, *self._jobs]:
            for attempt in job.tries:
                if not attempt.resolved:
                    self._resolve(attempt, UNUSED)
                elif attempt.status == OK:
                    attempt.status = UNUSED
                attempt.round = server_round
                rows.append(attempt.row(job.plan.start_s))
        self._buffered, self._jobs = [], []
        return rows

    def _forget(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)

    def _apply(self, ws: int, arrays: Arrays, replaced: bool) -> None:
        """A set's new weights: the aggregate, after its server optimiser (if any).

        Arrays the clients did not send (a personal layer a client keeps) keep the
        set's current values.
        """
        current = self.sets[ws]
        arrays = {name: arrays.get(name, value) for name, value in current.arrays.items()}
        optimizer = self.optimizers[ws] if self.optimizers else None
        if optimizer is not None and not replaced:
            arrays = optimizer.step(current.rounds_trained + 1, current.arrays, arrays)
        current.arrays = arrays
        current.rounds_trained += 1
        self._tallies.setdefault(ws, Tally()).updated = True

    def _tally(self, job: Job) -> Tally:
        """Add a job whose server stopped waiting to its weight set's tally."""
        assert job.end_s is not None
        tally = self._tallies.setdefault(job.weight_set, Tally())
        tally.start_s = min(tally.start_s, job.plan.start_s)
        tally.end_s = max(tally.end_s, job.end_s)
        tally.num_sent += job.first_tries()
        tally.clients += [t.row(job.plan.start_s) for t in job.tries]
        return tally

    # --- the end of a round -------------------------------------------------------------

    def _close_round(self, end: RoundEnd) -> None:
        """Evaluate the round's weight sets, write its records, checkpoint, check quorum."""
        tallies = {ws: self._tallies.pop(ws, Tally()) for ws in end.weight_sets}
        cohort = sorted({row["client"] for t in tallies.values() for row in t.clients})
        client_metrics, eval_rows = (
            self._evaluate_on_clients(end, cohort) if end.evaluate_clients else ({}, [])
        )
        unused = self._unused(end.round) if self.policy.done() else []
        for row in unused:  # sent, so counted among the last round's messages and bytes
            tally = tallies.get(int(row["weight_set"]))
            if tally is not None:
                tally.clients.append(row)
                tally.num_sent += row["attempt"] == 0
        everyone = len(end.weight_sets) == self.policy.num_weight_sets
        busy = [span for t in tallies.values() for span in t.busy]
        length = end.end_s - end.start_s
        now = time.perf_counter()
        clock = {
            "elapsed_wall_s": now - self._run_started,
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
            metrics = self._evaluate(0, merged)  # merging needs one model in every set
            record.rounds.append(
                ROUNDS.row(
                    strategy=self.label,
                    seed=self.cfg.seed,
                    round=end.round,
                    weight_set=MERGED,
                    set_name=MERGED,
                    accuracy=metrics["accuracy"],
                    loss=metrics["loss"],
                    val_accuracy=metrics["val_accuracy"],
                    val_loss=metrics["val_loss"],
                    **clock,
                )
            )
        record.clients += [self._client_row(row) for row in eval_rows]
        record.clients += [
            self._client_row(row) for row in unused if int(row["weight_set"]) not in tallies
        ]
        self._unfilled.pop(end.round, None)
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

    def quiet(self) -> bool:
        """Whether nothing is in flight on the simulated clock (a checkpoint can be taken)."""
        return not self._jobs and not self.sim.busy()

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
        metrics = self._evaluate(ws, weight_set.arrays)
        weight_set.history.append(metrics["accuracy"])
        weight_set.val_loss = metrics["val_loss"]
        client = client_metrics.get(ws, {})
        counted = [row for row in tally.clients if row["aggregated"]]
        started = self._last_wall.get(ws, self._run_started)
        self._last_wall[ws] = now
        return ROUNDS.row(
            strategy=self.label,
            seed=self.cfg.seed,
            round=end.round,
            weight_set=str(ws),
            set_name=self.cfg.set_name(ws),
            status=OK if tally.updated else QUORUM_MISSED,
            accuracy=metrics["accuracy"],
            loss=metrics["loss"],
            val_accuracy=metrics["val_accuracy"],
            val_loss=metrics["val_loss"],
            client_accuracy=client.get("accuracy"),
            client_loss=client.get("loss"),
            train_loss=train_loss(counted) if tally.updated else math.nan,
            num_clients=len(counted),
            num_sent=tally.num_sent,
            num_unfilled=self._unfilled.get(end.round, 0),
            num_examples=sum(int(row["num_examples"]) for row in counted),
            train_s=tally.end_s - tally.start_s if tally.clients else 0.0,
            aggregate_s=tally.aggregate_s,
            aggregate_wall_s=tally.aggregate_wall_s,
            group_start_s=tally.start_s if tally.clients else end.start_s,
            group_end_s=tally.ready_s if tally.clients else end.start_s,
            round_wall_s=now - started,
            **clock,
            **bytes_moved(tally.clients),
        )

    def _client_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return CLIENTS.row(strategy=self.label, seed=self.cfg.seed, **row)

    def _evaluate_on_clients(
        self, end: RoundEnd, cohort: list[int]
    ) -> tuple[dict[int, dict[str, float]], list[dict[str, Any]]]:
        """A seeded share of the round's cohort evaluates its weight sets on their own data.

        ``strategy.fraction_evaluate`` of the clients sent training messages this
        round (at least one) is split into as many groups as the round has weight
        sets, one set per group; the metrics are Flower's weighted means per set.
        Evaluation is a measurement, not part of the protocol: it takes no
        simulated time.
        """
        s = self.cfg.strategy
        sets = list(end.weight_sets)
        if s.fraction_evaluate == 0 or not cohort:
            return {}, []
        rng = rng_for(self.cfg.seed, "sample-evaluate", end.round)
        clients = sample_clients(cohort, s.fraction_evaluate, 1, rng)
        if len(clients) < len(sets):
            return {}, []
        groups = split_complementary(
            clients, len(sets), rng_for(self.cfg.seed, "split-evaluate", end.round)
        )
        asked = [
            (ws, client, to_record(self.sets[ws].arrays))
            for ws, group in zip(sets, groups, strict=True)
            for client in group
        ]
        # A client that evaluates nothing (no held-out examples, or no personal layer
        # of its own for the set) is in the records but not in the mean.
        replies = self._ask(asked, end.round, self.cfg.simulation.reply_timeout_s)
        rows, accepted = [], {}
        for (ws, client, _), reply in sorted(
            zip(asked, replies, strict=True), key=lambda p: p[0][1]
        ):
            row: dict[str, Any] = {
                "round": end.round,
                "phase": "evaluate",
                "client": client,
                "weight_set": str(ws),
                "attempt": 0,
            }
            if reply is None:
                row["status"] = TIMEOUT
            elif reply.has_error():
                row.update(status=FAILED, error=error_reason(reply))
            else:
                metrics = reply.content[METRICS]
                row.update(
                    status=OK,
                    num_examples=int(metrics[WEIGHT_KEY]),
                    loss=float(metrics["loss"]),
                    accuracy=float(metrics["accuracy"]),
                )
                if row["num_examples"] > 0:
                    accepted.setdefault(ws, []).append(reply.content)
            rows.append(row)
        metrics = {
            ws: dict(aggregate_metricrecords(contents, WEIGHT_KEY))
            for ws, contents in accepted.items()
        }
        return metrics, rows

    def _ask(
        self, asked: list[tuple[int, int, ArrayRecord]], server_round: int, timeout: float
    ) -> list[Message | None]:
        """Evaluation messages, sent as pool nodes are free; their replies in the same
        order (None where none came within ``timeout`` host seconds)."""
        deadline = time.monotonic() + timeout
        replies: list[Message | None] = [None] * len(asked)
        waiting: dict[str, tuple[int, int | None]] = {}
        queue = list(range(len(asked)))
        while (queue or waiting) and time.monotonic() < deadline:
            while queue and self.nodes.has_free():
                index = queue.pop(0)
                ws, client, record = asked[index]
                node = self.nodes.take(client)
                config = {
                    **self._train_config(ws),
                    "server-round": server_round,
                    "weight-set": ws,
                    "client-id": client,
                }
                # In pool binding what the client keeps for the set (its personal
                # layer) travels with the message, as it does for training.
                state = self._states.get((client, ws))
                message = client_message(
                    node,
                    record,
                    config,
                    MessageType.EVALUATE,
                    to_record(state) if state is not None else None,
                )
                (mid,) = self.grid.push_messages([message])
                waiting[mid] = (index, node if self.nodes.pool else None)
            for reply in self.grid.pull_messages(list(waiting)):
                index, node = waiting.pop(reply.metadata.reply_to_message_id)
                replies[index] = reply
                if node is not None:
                    self.nodes.release(node)
            if queue or waiting:
                time.sleep(POLL_S)
        for _, node in waiting.values():
            if node is not None:
                self.nodes.release(node)
        return replies

    def _evaluate(self, ws: int, arrays: Arrays) -> dict[str, float]:
        """The server's test and validation of weight set ``ws``'s weights ``arrays``:
        empty (NaN) in personal mode, where every client's classifier stays on the client
        and the server's never trains, so no model the server holds is any client's."""
        if self.cfg.train.client_state == "personal":
            return {key: math.nan for key in ("accuracy", "loss", "val_accuracy", "val_loss")}
        if self.set_models:
            return self.set_models[ws].evaluate(arrays)
        return self.evaluate(arrays)

    def _train_config(self, ws: int) -> dict[str, Any]:
        """The settings of weight set ``ws`` a client trains (and evaluates) with: they
        travel in each message, so a client needs no copy of the server's config."""
        cfg = self.cfg.for_set(ws)
        t = cfg.train
        return {
            "model": cfg.model.name,
            "local-epochs": t.local_epochs,
            "batch-size": t.batch_size,
            "lr": t.lr,
            "momentum": t.momentum,
            "augment": t.augment,
            **({"train-step": t.step} if t.step else {}),
        }

    # --- checkpoints ------------------------------------------------------------------

    def checkpoint_state(self) -> tuple[dict[str, Any], Arrays]:
        """Everything beyond the seed and the round that the next rounds depend on.

        Taken between rounds with nothing in flight (:meth:`quiet`), so the
        simulated clock is its time, its cores and the clients' free times.
        """
        state = {
            "sim_time_s": self.sim.now,
            "cores_free_at": list(self.sim.cores.free_at),
            "elapsed_wall_s": time.perf_counter() - self._run_started,
            "quorum_streaks": self.watch.streaks,
            "tracker": self.tracker.state(),
            "free_at": {str(c): t for c, t in self._free_at.items()},
            "client_states": [[c, ws] for c, ws in sorted(self._states)],
            "policy": self.policy.state(),
            "weight_sets": [
                {
                    "rounds_trained": ws.rounds_trained,
                    "history": ws.history,
                    "val_loss": ws.val_loss,
                }
                for ws in self.sets
            ],
        }
        arrays = {
            f"weights/{ws.id}/{name}": value
            for ws in self.sets
            for name, value in ws.arrays.items()
        }
        for i, optimizer in enumerate(self.optimizers):
            if optimizer is not None:
                arrays.update({f"optimizer/{i}/{k}": v for k, v in optimizer.state().items()})
        for (client, ws), kept in self._states.items():
            arrays.update({f"client/{client}/{ws}/{k}": v for k, v in kept.items()})
        return state, arrays

    def restore(self, ckpt: Checkpoint) -> None:
        """Continue from ``ckpt``: weight sets, optimisers, clocks, estimates, policy."""
        state = ckpt.strategy
        self.sim.now = float(state["sim_time_s"])
        self.sim.cores.free_at = [float(t) for t in state["cores_free_at"]]
        for link in self.sim.links.values():
            link.time = self.sim.now
        self._wall_before = float(state["elapsed_wall_s"])
        self.watch.streaks = {k: int(v) for k, v in state["quorum_streaks"].items()}
        self.tracker.load_state(state["tracker"])
        self._free_at = {int(c): float(t) for c, t in state.get("free_at", {}).items()}
        for client, ws in state.get("client_states", []):
            prefix = f"client/{client}/{ws}/"
            self._states[int(client), int(ws)] = {
                k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)
            }
        self.policy.load_state(state["policy"])
        self.checkpoint_round = ckpt.round
        for ws in self.sets:
            prefix = f"weights/{ws.id}/"
            ws.arrays = {
                k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)
            }
            saved = state["weight_sets"][ws.id]
            ws.rounds_trained, ws.history = int(saved["rounds_trained"]), list(saved["history"])
            ws.val_loss = float(saved.get("val_loss", math.nan))
        for i, optimizer in enumerate(self.optimizers):
            if optimizer is None:
                continue
            prefix = f"optimizer/{i}/"
            optimizer.load_state(
                {k[len(prefix) :]: v for k, v in ckpt.arrays.items() if k.startswith(prefix)}
            )

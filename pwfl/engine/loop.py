"""The round engine's loop: plan, send, take the next event, repeat.

Two clocks run side by side. On the host, a job's messages are pushed as soon
as it is planned and the replies are pulled as they come, so clients train
concurrently. On the simulated clock, every message goes through events
(:mod:`pwfl.engine.events`), processed strictly in simulated-time order: an
event that needs a client's reply waits for the host to get it. So the order of
events, and every choice a policy makes from them, follows simulated time
alone, never the order in which this host happened to run the clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flwr.serverapp import Grid

from pwfl.aggregation import Arrays, Executor
from pwfl.callbacks import Callback
from pwfl.checkpoint import Checkpoint
from pwfl.clock import Simulation
from pwfl.config import Config
from pwfl.devices import ClientProfile
from pwfl.engine.events import EventHandling, GiveUp, Start
from pwfl.engine.jobs import EvaluateFn, Job, RunResult, SetModel, WeightSet
from pwfl.engine.messaging import POLL_S, Messenger
from pwfl.engine.rounds import RoundRecords
from pwfl.engine.server import ServerSide
from pwfl.engine.state import CheckpointState
from pwfl.ledger import LATE, TIMEOUT, Try
from pwfl.population import Population
from pwfl.quorum import QuorumLost, QuorumWatch
from pwfl.stragglers import StragglerTracker, cost_of
from pwfl.strategies.base import Plan, Policy
from pwfl.strategies.server_optimizer import ServerOptimizer
from pwfl.transport import NodeBinding, to_record

POOL_LIMIT = 10_000
"""Populations up to this size are listed in full when a policy draws a group from
the free clients (async, FedBuff); a larger one offers a uniform sample this big."""


class Engine(EventHandling, ServerSide, RoundRecords, CheckpointState):
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
    set_models
        One per weight set when the sets' models or settings differ, else empty.

    A Ctrl-C stops the loop at its next grid call (:mod:`pwfl.interrupt`).
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
        profiles: Mapping[int, ClientProfile],
        callbacks: Sequence[Callback] = (),
        statistics: frozenset[str] = frozenset(),
        flops_per_example: float = 0.0,
        set_models: Sequence[SetModel] = (),
    ):
        self.cfg, self.label, self.policy = cfg, label, policy
        self.grid, self.population, self.nodes = grid, population, nodes
        self.evaluate, self.executor, self.profiles = evaluate, executor, profiles
        self.callbacks = list(callbacks)
        self.statistics = statistics
        self.flops_per_example = flops_per_example
        self.set_models = list(set_models)
        if cfg.clock.compute == "modelled" and flops_per_example <= 0:
            raise ValueError("the modelled clock needs the model's FLOPs per example")
        self.tracker = StragglerTracker(cfg.stragglers, cfg.train.local_epochs)
        self.costs = [cost_of(cfg.for_set(ws)) for ws in range(policy.num_weight_sets)]
        set_strategies = [cfg.for_set(ws).strategy for ws in range(policy.num_weight_sets)]
        self.optimizers = (
            [ServerOptimizer(s) if s.server_opt != "none" else None for s in set_strategies]
            if any(s.server_opt != "none" for s in set_strategies)
            else []
        )
        self.watch = QuorumWatch(
            cfg.faults.max_missed_rounds, policy.num_weight_sets, policy.updates_per_step
        )
        self.sets = []
        self.checkpoint_round = 0 if cfg.checkpoint.every > 0 else -1
        """The round of the newest checkpoint, -1 when none are written (clients
        prune the state files that no checkpoint can need)."""
        s = cfg.server
        self.sim = Simulation(s.up_mbps, s.down_mbps, s.cores)
        cohorts = nodes.pool and cfg.simulation.messages == "cohort"
        self.messenger = Messenger(
            grid, nodes, cfg.simulation.reply_timeout_s, cohorts, cfg.simulation.node_aggregation
        )
        self.jobs, self.next_job, self.dispatches = [], 0, {}
        self.free_at, self.busy, self.tallies, self.unfilled = {}, set(), {}, {}
        self.wall_before = 0.0  # host seconds spent before a resume
        self.run_started = 0.0
        self.last_wall = {}
        """Each weight set's latest round end, in host seconds of the run (checkpointed:
        the first round after a resume counts from the checkpoint's round end, the
        host time between the checkpoint and the resume left out)."""
        self.closing = None
        self.norms = {}
        """(client, weight set) -> the norm of its latest counted update (checkpointed;
        kept only for the variance-reduced group policy)."""

    # --- what policies may read (pwfl.strategies.base.Server) ---------------------------

    @property
    def num_clients(self) -> int:
        return self.population.num_clients

    def sample(self, server_round: int, count: int, rng: np.random.Generator) -> list[int]:
        """``count`` online clients for ``server_round``, uniformly at random (seeded by
        ``rng``); fewer when too few are online, the shortfall kept for the records
        (``num_unfilled``)."""
        picked = self.population.sample(server_round, count, rng)
        wanted = min(count, self.num_clients)
        self.unfilled[server_round] = self.unfilled.get(server_round, 0) + wanted - len(picked)
        return picked

    def free_pool(self, at: float, rng: np.random.Generator) -> list[int]:
        """The clients online at simulated time ``at`` in no job in flight: all of them
        in a population of at most ``POOL_LIMIT``, else a uniform random
        ``POOL_LIMIT`` of them."""
        period = self.population.period_at(at)
        return self.population.eligible(period, sorted(self.busy), POOL_LIMIT, rng)

    def next_period_s(self, at: float) -> float:
        """When the online period after the one holding ``at`` starts (new online draws)."""
        return self.population.next_period_s(at)

    def in_flight(self) -> int:
        """How many clients are in a job the server still waits for."""
        return len(self.busy)

    def sizes(self, clients: Sequence[int]) -> dict[int, int]:
        return self.population.sizes(clients)

    def weights(self, weight_set: int) -> Arrays:
        return self.sets[weight_set].arrays

    def set_weights(self, weight_set: int, arrays: Arrays) -> None:
        self.sets[weight_set].arrays = arrays

    def losses(self) -> tuple[float, ...]:
        """Each weight set's latest server validation loss (NaN before its first)."""
        return tuple(ws.val_loss for ws in self.sets)

    def update_norms(self) -> dict[tuple[int, int], float]:
        return self.norms

    def holds(self, client: int, weight_set: int) -> bool:
        return self.population.holds(client, weight_set)

    def local_epochs(self, weight_set: int, clients: Sequence[int]) -> tuple[float, ...]:
        """The local epochs to ask of each of ``clients`` training ``weight_set``, planned now.

        Load balancing's share of the shared epochs, from the estimates of what
        this set's work costs each client as they stand now, scaled to the set's
        own epochs (``epochs x own / shared``).
        """
        shares = self.tracker.plan(self.costs[weight_set], clients)
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
        self.run_started = time.perf_counter() - self.wall_before
        for callback in self.callbacks:
            callback.on_run_start(self.policy.records_expected(), resume.round if resume else 0)
        try:
            self.launch(self.policy.plan(self))
            while not self.policy.done() or self.closing is not None:
                self._step()
        except QuorumLost as err:
            return RunResult(self._weights(), str(err))
        return RunResult(self._weights())

    def _step(self) -> None:
        """Pull the replies that are in; handle the next event on the simulated clock
        once the host knows what it needs, and send what the policy plans then."""
        self.messenger.poll()
        if self.closing is not None:
            # A round waits for its clients' evaluations: no event is handled and
            # nothing planned until they are in, so its records and checkpoint hold
            # the state at the round's end.
            if not self.closing.settled:
                time.sleep(POLL_S)
                return
            self.finish_round()
            self.launch(self.policy.plan(self))
            return
        upcoming = self.sim.peek()
        if upcoming is None:
            # A job without clients ends as it is sent, its round with it: the
            # policy may plan the next one now.
            plans = self.policy.plan(self)
            if not plans:
                raise RuntimeError(f"{self.label}: nothing in flight and nothing planned")
            self.launch(plans)
        elif self.ready(upcoming[1]):
            self.handle(self.sim.pop()[1])
            if self.closing is None:
                self.launch(self.policy.plan(self))
        else:
            time.sleep(POLL_S)

    def _weights(self) -> dict[str, Arrays]:
        return {str(ws.id): ws.arrays for ws in self.sets}

    def launch(self, plans: list[Plan]) -> None:
        """Send every planned job's messages now (the host starts the clients at once, as
        far as nodes are free) and place its clients' tries on the simulated clock."""
        for plan in plans:
            if plan.start_s < self.now - 1e-9:
                raise ValueError(f"a job planned at {plan.start_s} s, before now ({self.now} s)")
            ws = self.sets[plan.weight_set]
            job = Job(self.next_job, plan, ws.arrays, ws.rounds_trained)
            self.next_job += 1
            self.jobs.append(job)
            record = to_record(ws.arrays)
            sent = []
            for client, epochs in zip(plan.clients, plan.epochs, strict=True):
                attempt = Try(
                    job.id,
                    client,
                    job.weight_set,
                    plan.round,
                    0,
                    epochs,
                    record,
                    self._message_config(plan, client, epochs),
                )
                job.tries.append(attempt)
                sent.append(attempt)
                begin = max(plan.start_s, self.free_at.get(client, 0.0))
                self.schedule(attempt, begin, Start(attempt))
            self.messenger.send_all(sent)
            job.waiting = set(plan.clients)
            self.busy.update(plan.clients)
            deadline = self.cfg.stragglers.deadline_s
            if deadline and math.isfinite(deadline):
                job.events.append(self.sim.at(plan.start_s + deadline, GiveUp(job, LATE)))
            timeout = self.cfg.faults.round_timeout_s
            if math.isfinite(timeout):
                job.events.append(self.sim.at(plan.start_s + timeout, GiveUp(job, TIMEOUT)))
            if not plan.clients:
                self.complete(job)

    def _message_config(self, plan: Plan, client: int, epochs: float) -> dict[str, Any]:
        # A policy without rounds (FedBuff) can send one client two jobs in one step:
        # the n-th job of a (round, client, set) draws its own batches, dropout and
        # faults (n = 0 for every other strategy).
        key = (plan.round, client, plan.weight_set)
        repeat = self.dispatches.get(key, 0)
        self.dispatches[key] = repeat + 1
        return {
            **self.train_config(plan.weight_set),
            "server-round": plan.round,
            "weight-set": plan.weight_set,
            "checkpoint-round": self.checkpoint_round,
            "client-id": client,
            "local-epochs": epochs,
            "repeat": repeat,
        }

    def train_config(self, weight_set: int) -> dict[str, Any]:
        """The settings of ``weight_set`` a client trains (and evaluates) with: they travel
        in each message, so a client needs no copy of the server's config."""
        cfg = self.cfg.for_set(weight_set)
        t = cfg.train
        return {
            "model": cfg.model.name,
            "local-epochs": t.local_epochs,
            "batch-size": t.batch_size,
            "lr": t.lr,
            "momentum": t.momentum,
            "augment": t.augment,
            **({"train-step": t.step} if t.step else {}),
            **self.policy.train_config(weight_set),
        }

    def quiet(self) -> bool:
        """Whether a checkpoint can be taken now: always, at a round's end (what is in
        flight is saved with it, :mod:`pwfl.engine.state`)."""
        return True

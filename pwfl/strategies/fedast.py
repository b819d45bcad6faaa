"""FedAST: K tasks trained at once by buffered asynchronous aggregation, slots moved between tasks.

Its keys live in its own table, ``[strategy.fedast]`` (:class:`FedASTSettings`).

Askin, Sharma, Joe-Wong and Joshi, "FedAST: Federated Asynchronous Simultaneous
Training", UAI 2024 (arXiv:2406.00302), as its reference code runs it. Each weight set
is a task (``[[weight_set]]`` tables give each its own data and model) with a FedBuff
buffer of its own (:mod:`pwfl.strategies.fedbuff`): the server puts a reply's delta
``y_i - w_sent``, weighted ``(1 + tau_i)^-a / b``, into its task's buffer and, when the
buffer holds ``b`` (``buffer_size``) of them, steps that task's model
``w <- w + eta sum_i ...`` (``eta``: ``strategy.server_lr``, 0.1 when 0, the reference
code's ``global_lr``). The reference
code weights no update by its staleness: ``staleness_exponent`` is 0 by default.

``concurrency`` clients train at once over all tasks. They are *slots*: each task
has a number of them (``R_s``, equal at the start), and the moment a reply frees a
slot the server gives it to the unfinished task furthest below its share
(``R_s`` minus its jobs in flight; ties to the lower set), which sends its latest model
to a free online client that holds its data, drawn from the seed (no client trains
two tasks at once). A task whose ``strategy.num_rounds`` steps are done hands its
slots to the others, in proportion to theirs.

With ``realloc = "variance"`` the shares move to where the updates disagree most, as
the reference code's reallocation: every ``realloc_every`` delivered updates (0: the
code's period, three quarters of ``concurrency`` times the unfinished tasks), once every
unfinished task has taken more than 8 steps, each unfinished task's share becomes
proportional to the mean, over its steps since the last reallocation, of its updates'
relative variance ``sum_i ||d_i - mean||^2 / (b ||mean||^2)`` over the weights but the
biases (at least one slot each; largest remainders). While one unfinished task has no
step since (or updates that all agree), no share moves, and the next update tries
again. Three departures, each stated: the variance is taken over each step's buffer,
not the code's window of its last 8 updates (so no update is kept beyond its step and a
checkpoint holds numbers only); it is not scaled by the learning rates (the relative
variance is free of them); and shares move in slots of one, not blocks of 32, with
buffers of a fixed size (the code resizes ``b_s`` to ``ceil(R_s / 32)``).

Each server step is a round of the records of its task (``rounds.csv`` has a row per
(step, task)); clients do not run federated evaluation; a checkpoint at any step
holds the buffers, the shares, the slots due and the variances, so a run resumes
exactly. A run stops, with its records kept, when ``faults.max_missed_rounds`` x
``buffer_size`` client updates in a row have failed (the engine's quorum watch).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pwfl.aggregation import Arrays, Update, buffered_step
from pwfl.config import Config, ranged
from pwfl.errors import ConfigError
from pwfl.quorum import OK
from pwfl.seeding import rng_for
from pwfl.strategies.base import Aggregation, Finished, Plan, Policy, RoundEnd, Server, free_when
from pwfl.strategies.fedbuff import buffered_update


@dataclass(frozen=True)
class FedASTSettings:
    """FedAST's own keys (Askin et al., UAI 2024), its table ``[strategy.fedast]``."""

    buffer_size: int = ranged(3, ge=1)
    """Updates each task buffers before its server step (b_m); 3, the buffers of the
    reference code's experiments."""
    concurrency: int = ranged(0, ge=0)
    """Clients training at once over all tasks, at least strategy.k and at most
    data.num_clients; 0 means as many as the other strategies sample per round."""
    staleness_exponent: float = ranged(0.0, ge=0)
    """An update tau steps of its task old is weighted (1 + tau)^-a; 0 (the reference
    code's) weights every update alike."""
    realloc: str = "variance"
    """How the tasks' shares of the slots move: variance (in proportion to each
    task's update variance) or none (equal shares, until a task finishes)."""
    realloc_every: int = ranged(0, ge=0)
    """Replies between reallocations; 0: three quarters of concurrency times the
    unfinished tasks, the reference code's period."""


REALLOC = ("variance", "none")
FIRST_REALLOC_AFTER = 8
"""Steps every unfinished task takes before the first reallocation (the reference code's
``min(round_list) > 8``)."""
DEFAULT_SERVER_LR = 0.1
"""The step's eta when ``strategy.server_lr`` is 0: the reference code's ``global_lr``.
With many clients per task in flight and small buffers, updates are several steps
stale; at 1 (FedBuff's default) the MNIST CNN of ``mmfl_three_tasks.toml`` diverged
(docs/strategies.md gives the run)."""


class FedAST(Policy):
    """Buffered asynchronous aggregation per task, one pool of client slots."""

    name = "fedast"
    Settings = FedASTSettings
    weight_set_tables = True
    groups_by_policy = False
    rounds_are_steps = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        k = self.num_weight_sets = cfg.strategy.k
        self.buffer_size = self.updates_per_step = int(self.settings.buffer_size)
        self.server_lr = cfg.strategy.server_lr or DEFAULT_SERVER_LR
        self.exponent = float(self.settings.staleness_exponent)
        slots = self.clients_in_flight(cfg)
        self.shares = _apportion(slots, [1.0] * k, [True] * k)
        """Each task's slots (``R_s``); they sum to ``concurrency``."""
        self.active = [0] * k
        """Each task's jobs in flight."""
        self.steps = [0] * k
        self._last_step_s = [0.0] * k
        self._buffers: list[list[Update]] = [[] for _ in range(k)]
        self._sources: list[list[int]] = [[] for _ in range(k)]
        self._due: list[float] = [0.0] * slots
        """Simulated times at which a free slot goes to a task."""
        self._sent = 0
        self._replies = 0
        """Replies since the last reallocation."""
        self._variance = [[0.0, 0] for _ in range(k)]
        """Per task: the sum and count of its steps' relative variances since then."""

    # --- sending ------------------------------------------------------------------------

    def plan(self, server: Server) -> list[Plan]:
        """Give each free slot to the task furthest below its share, and send that task's
        model to a free online client that holds its data."""
        plans: list[Plan] = []
        taken: set[int] = set()
        due, self._due = self._due, []
        for at in due:
            ws = self._neediest()
            if ws is None:  # every task is done: the slot stays idle
                continue
            rng = rng_for(self.cfg.seed, "fedast-sample", self._sent)
            choose = functools.partial(_one_holding, server, ws, rng)
            found = free_when(server, at, rng, taken, choose)
            if found is None:  # try again when the next reply frees a client
                self._due.append(at)
                continue
            at, (client,) = found
            self._sent += 1
            self.active[ws] += 1
            taken.add(client)
            epochs = server.local_epochs(ws, (client,))
            plans.append(Plan(ws, self.steps[ws] + 1, (client,), at, epochs))
        return plans

    def _neediest(self) -> int | None:
        """The unfinished task with the most slots short of its share (the lowest of ties),
        None when every task is done."""
        open_ = [ws for ws in range(self.num_weight_sets) if not self._finished(ws)]
        if not open_:
            return None
        return max(open_, key=lambda ws: (self.shares[ws] - self.active[ws], -ws))

    def _finished(self, ws: int) -> bool:
        return self.steps[ws] >= self.cfg.strategy.num_rounds

    # --- replies and steps ----------------------------------------------------------------

    each_update = True  # each update is weighed on its own in a buffered step

    def aggregations(self, job: Finished, server: Server) -> list[Aggregation]:
        """Buffer the reply's weighted delta in its task's buffer; step when it is full.
        (A finished task has no job left: its last round gave them up.)"""
        ws = job.plan.weight_set
        if job.status != OK or not job.updates:
            return []
        self._replies += 1  # delivered updates, as the reference code counts them
        statistics = server.statistics
        self._buffers[ws].append(buffered_update(job, statistics, self.exponent, self.buffer_size))
        self._sources[ws].append(job.job)
        if len(self._buffers[ws]) < self.buffer_size:
            return []
        buffered, self._buffers[ws] = self._buffers[ws], []
        sources, self._sources[ws] = tuple(self._sources[ws]), []
        total, count = self._variance[ws]
        self._variance[ws] = [
            total + relative_variance([d for d, _ in buffered], statistics),
            count + 1,
        ]
        step = functools.partial(
            buffered_step,
            base=server.weights(ws),
            server_lr=self.server_lr,
            statistics=statistics,
        )
        return [Aggregation(ws, step, buffered, sources, waits=False)]

    def finished(self, job: Finished, server: Server) -> RoundEnd | None:
        """The reply is in: its slot is free now, and the shares may move."""
        self.active[job.plan.weight_set] -= 1
        self._due.append(job.end_s)
        self._maybe_reallocate()
        return None

    def aggregated(self, aggregation: Aggregation, ready_s: float, server: Server) -> RoundEnd:
        """A task's server step is applied: a round of the records of that task. A task
        that has taken its last step hands its slots to the others."""
        ws = aggregation.weight_set
        self.steps[ws] += 1
        last = self._finished(ws) and not self.done()
        end = RoundEnd(self.steps[ws], (ws,), self._last_step_s[ws], ready_s, False, last)
        self._last_step_s[ws] = ready_s
        if last:
            # Its jobs in flight are given up as the round closes (RoundEnd.last), as the
            # reference code cancels a finished task's jobs: their slots are free now.
            self._due += [server.now] * self.active[ws]
            self.active[ws] = 0
            self.shares = self._redistributed(ws)
        return end

    def _redistributed(self, done: int) -> list[int]:
        """The shares once task ``done`` has finished: its slots go to the unfinished
        tasks in proportion to their own shares."""
        open_ = [not self._finished(ws) for ws in range(self.num_weight_sets)]
        if not any(open_):
            return [0] * self.num_weight_sets
        weights = [float(max(s, 1)) for s in self.shares]
        return _apportion(sum(self.shares), weights, open_)

    def _maybe_reallocate(self) -> None:
        if self.settings.realloc != "variance":
            return
        open_ = [not self._finished(ws) for ws in range(self.num_weight_sets)]
        period = self.settings.realloc_every or max(1, (3 * sum(self.shares)) // 4 * sum(open_))
        early = any(
            o and steps <= FIRST_REALLOC_AFTER for o, steps in zip(open_, self.steps, strict=True)
        )
        if self._replies < period or sum(open_) < 2 or early:
            return
        means = [(total / count if count else math.nan) for total, count in self._variance]
        if any(o and (math.isnan(m) or m <= 0) for o, m in zip(open_, means, strict=True)):
            return  # a task with no step (or updates that all agree) since: shares stay
        self.shares = _apportion(sum(self.shares), means, open_)
        self._replies = 0
        self._variance = [[0.0, 0] for _ in range(self.num_weight_sets)]

    def done(self) -> bool:
        return all(self._finished(ws) for ws in range(self.num_weight_sets))

    def records_expected(self) -> int:
        return self.cfg.strategy.num_rounds * self.num_weight_sets

    # --- checkpoints ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Steps, shares, jobs in flight, slots due, the buffers' weights and sources,
        the variances since the last reallocation."""
        return {
            "steps": self.steps,
            "shares": self.shares,
            "active": self.active,
            "due": self._due,
            "sent": self._sent,
            "replies": self._replies,
            "variance": self._variance,
            "last_step_s": self._last_step_s,
            "sources": self._sources,
            "weights": [[w for _, w in buffer] for buffer in self._buffers],
            "names": [[sorted(d) for d, _ in buffer] for buffer in self._buffers],
        }

    def state_arrays(self) -> Arrays:
        return {
            f"buffer/{ws}/{i}/{name}": value
            for ws, buffer in enumerate(self._buffers)
            for i, (delta, _) in enumerate(buffer)
            for name, value in delta.items()
        }

    def load_state(self, state: dict[str, Any], arrays: Arrays) -> None:
        self.steps = [int(s) for s in state["steps"]]
        self.shares = [int(s) for s in state["shares"]]
        self.active = [int(a) for a in state["active"]]
        self._due = [float(at) for at in state["due"]]
        self._sent = int(state["sent"])
        self._replies = int(state["replies"])
        self._variance = [[float(t), int(c)] for t, c in state["variance"]]
        self._last_step_s = [float(t) for t in state["last_step_s"]]
        self._sources = [[int(j) for j in sources] for sources in state["sources"]]
        self._buffers = [
            [
                ({name: arrays[f"buffer/{ws}/{i}/{name}"] for name in names}, float(weight))
                for i, (names, weight) in enumerate(zip(all_names, weights, strict=True))
            ]
            for ws, (all_names, weights) in enumerate(
                zip(state["names"], state["weights"], strict=True)
            )
        ]

    # --- its rules -----------------------------------------------------------------------

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """Its own step (no other aggregator or server optimiser, no merge), a known
        reallocation rule, at least one slot per task and one job per client."""
        s, settings = cfg.strategy, cls.settings_of(cfg)
        sets = [cfg.for_set(ws) for ws in range(len(cfg.weight_set))] or [cfg]
        own = [c.strategy.server_opt for c in sets if c.strategy.server_opt != "none"]
        if s.aggregator != "fedavg" or own or s.server_opt != "none":
            key, value = (
                ("strategy.aggregator", s.aggregator)
                if s.aggregator != "fedavg"
                else ("strategy.server_opt", s.server_opt if s.server_opt != "none" else own[0])
            )
            raise ConfigError(
                f"config key '{key}' = {value!r} is invalid: fedast steps each task's model "
                "with its own buffered update; use strategy.name = pwfl for another"
            )
        if s.group_policy != "complementary":
            raise ConfigError(
                f"config key 'strategy.group_policy' = {s.group_policy!r} is not read by "
                "fedast, which gives each freed slot to the task furthest below its share; "
                "leave it at complementary"
            )
        if s.merge != "none":
            raise ConfigError(
                f"config key 'strategy.merge' = {s.merge!r} is invalid: fedast's tasks are "
                "not merged; use merge = none"
            )
        if settings.realloc not in REALLOC:
            raise ConfigError(
                f"config key 'strategy.fedast.realloc' = {settings.realloc!r} is invalid: "
                f"choose one of {', '.join(REALLOC)}"
            )
        slots, n = cls.clients_in_flight(cfg), cfg.data.num_clients
        if settings.concurrency > n or slots < s.k:
            raise ConfigError(
                f"config key 'strategy.fedast.concurrency' = {settings.concurrency!r} is "
                f"invalid: {slots} clients at once must be between strategy.k ({s.k}) and "
                f"data.num_clients ({n}): each task needs a slot, a client trains one at a time"
            )

    @classmethod
    def clients_in_flight(cls, cfg: Config) -> int:
        """``strategy.fedast.concurrency``, or as many as the other strategies sample."""
        return cls.settings_of(cfg).concurrency or Policy.clients_in_flight(cfg)


def relative_variance(deltas: list[Arrays], statistics: frozenset[str] = frozenset()) -> float:
    """``sum_i ||d_i - mean||^2 / (n ||mean||^2)`` over the weights (running statistics and
    biases left out), in float64, arrays in sorted order: how much ``n`` updates of one task
    disagree, free of the task's learning rate. NaN for no update or a zero mean."""
    if not deltas:
        return math.nan
    # Bias vectors are left out, as the reference code leaves them out.
    names = sorted(n for n in deltas[0] if n not in statistics and "bias" not in n)
    spread = norm = 0.0
    for name in names:
        stack = np.stack([np.asarray(d[name], dtype=np.float64).ravel() for d in deltas])
        mean = stack.mean(axis=0)
        spread += float(((stack - mean) ** 2).sum())
        norm += float(mean @ mean)
    return spread / (len(deltas) * norm) if norm > 0 else math.nan


def _apportion(total: int, weights: list[float], open_: list[bool]) -> list[int]:
    """``total`` slots over the open tasks in proportion to ``weights``, at least one
    each, by largest remainders (ties to the lower task); closed tasks get none."""
    idx = [i for i, o in enumerate(open_) if o]
    shares = [0] * len(weights)
    if not idx:
        return shares
    base = min(1, total // len(idx))
    for i in idx:
        shares[i] = base
    left = total - base * len(idx)
    mass = sum(weights[i] for i in idx)
    exact = {i: left * weights[i] / mass for i in idx}
    for i in idx:
        shares[i] += int(math.floor(exact[i]))
    rest = total - sum(shares)
    order = sorted(idx, key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


def _one_holding(server: Server, ws: int, rng: np.random.Generator, free: list[int]) -> list[int]:
    """One of the ``free`` clients that hold task ``ws``'s data, uniformly at random."""
    holding = [c for c in free if server.holds(c, ws)]
    return [int(rng.choice(holding))] if holding else []

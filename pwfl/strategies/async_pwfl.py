"""Asynchronous PWFL: each weight set moves on as soon as its own group is aggregated.

There is no round barrier over the K groups. When weight set k's group has
replied and been aggregated, weight set k's next round is sent to a fresh group
drawn, through ``strategy.group_policy``, from the one pool of clients free at
that moment on the simulated clock: a client is free again as soon as its own
reply is in (not when its group's slowest client is), so groups mix from round
to round. No client is ever in two groups at once, retries included. Who is
online follows the simulated clock (``clients.online_period_s``), not a set's
round: a set that finds no free online client waits for the next reply, or
when none is in flight, for the next online period.
Clients do not run federated evaluation in this mode (``client_accuracy`` is
empty); every weight set is evaluated on the server's test set after each of
its rounds. Load balancing plans a group's local epochs when its set's round
starts (its group is drawn), from the round-trip estimates as they stand then:
with no common round start, each set's round has its own moment. A checkpoint
taken at the end of a set's round holds the groups still in flight
(:mod:`pwfl.engine.state`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from pwfl.config import Config, num_sampled
from pwfl.partition import draw_group
from pwfl.seeding import rng_for
from pwfl.strategies.base import (
    Finished,
    Plan,
    Policy,
    RoundEnd,
    Server,
    free_when,
    group_context,
)
from pwfl.strategies.pwfl import check_group_count, configured_aggregator


class AsyncPWFL(Policy):
    """PWFL without a round barrier between the K weight sets."""

    name = "pwfl"
    weight_set_tables = True

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.num_weight_sets = cfg.strategy.k
        self.aggregate = configured_aggregator(cfg)
        self._due: list[tuple[int, int, float]] = [(ws, 1, 0.0) for ws in range(cfg.strategy.k)]
        """(weight set, round, simulated time) of the jobs to send next, in order."""
        self._waiting: list[tuple[int, int]] = []
        """Weight sets that found no free client, with the round they wait to start."""
        self._completed = dict.fromkeys(range(cfg.strategy.k), 0)

    def _group_size(self, server: Server) -> int:
        s = self.cfg.strategy
        sampled = num_sampled(server.num_clients, s.fraction_train, s.min_train_nodes)
        return max(1, math.ceil(sampled / self.num_weight_sets))

    def plan(self, server: Server) -> list[Plan]:
        """Each due weight set draws its group from the clients free at its start time."""
        plans: list[Plan] = []
        taken: set[int] = set()
        due, self._due = self._due, []
        for ws, server_round, at in due:
            rng = rng_for(self.cfg.seed, "async-sample", ws, server_round)
            choose = functools.partial(self._draw, server, ws, server_round, rng)
            found = free_when(server, at, rng, taken, choose)
            if found is None:
                self._waiting.append((ws, server_round))
                continue
            at, clients = found
            taken.update(clients)
            epochs = server.local_epochs(ws, clients)
            plans.append(Plan(ws, server_round, tuple(clients), at, epochs))
        return plans

    def _draw(
        self, server: Server, ws: int, server_round: int, rng: np.random.Generator, free: list[int]
    ) -> list[int]:
        """Weight set ``ws``'s group for its round ``server_round`` from the ``free``
        clients, by ``strategy.group_policy`` (none when none of them may train it)."""
        policy = self.cfg.strategy.group_policy
        return draw_group(
            policy,
            free,
            ws,
            self.num_weight_sets,
            self._group_size(server),
            rng,
            server.sizes(free) if policy == "balanced" else {},
            group_context(self.cfg, server, server_round),
        )

    def finished(self, job: Finished, server: Server) -> RoundEnd:
        """Each group ends its weight set's round; the set's next round is due at once."""
        ws, server_round = job.plan.weight_set, job.plan.round
        self._completed[ws] = server_round
        if server_round < self.cfg.strategy.num_rounds:
            self._due.append((ws, server_round + 1, job.ready_s))
        # The sets that found nobody free try again now that this group's clients are.
        self._due += [(other, r, server.now) for other, r in self._waiting]
        self._waiting = []
        return RoundEnd(server_round, (ws,), job.plan.start_s, job.ready_s, evaluate_clients=False)

    def done(self) -> bool:
        finished = all(r >= self.cfg.strategy.num_rounds for r in self._completed.values())
        return finished and not self._due and not self._waiting

    def records_expected(self) -> int:
        return self.cfg.strategy.num_rounds * self.num_weight_sets

    def state(self) -> dict[str, Any]:
        """The jobs due, the sets waiting for a free client, each set's last round."""
        return {
            "due": [list(item) for item in self._due],
            "waiting": [list(item) for item in self._waiting],
            "completed": {str(ws): r for ws, r in self._completed.items()},
        }

    def load_state(self, state: dict[str, Any], arrays: dict) -> None:
        self._due = [(int(ws), int(r), float(at)) for ws, r, at in state["due"]]
        self._waiting = [(int(ws), int(r)) for ws, r in state["waiting"]]
        self._completed = {int(ws): int(r) for ws, r in state["completed"].items()}

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """K groups need K sampled clients."""
        check_group_count(cfg)

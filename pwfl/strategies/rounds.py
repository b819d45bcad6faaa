"""Synchronous rounds over K disjoint client groups: the round barrier FedAvg and PWFL share.

Each round the server samples online clients, splits them into K disjoint
groups (one group for FedAvg), sends group k weight set k, aggregates each group
on its own as soon as its replies are in, and ends the round when the last group
is aggregated. With ``sequential``, group k+1 is sent only once group k is
aggregated (``pwfl-sequential``).

Load balancing plans every group's local epochs once per round, at its start,
from the round-trip estimates as they stood then (the replies of earlier rounds):
a group sent later in the round (``pwfl-sequential``) is asked what it would have
been asked sent at once, so both train the same models on the same epochs.
"""

from __future__ import annotations

from typing import Any

from pwfl.config import Config, num_sampled
from pwfl.partition import split_clients
from pwfl.seeding import rng_for
from pwfl.strategies.base import Finished, Plan, Policy, RoundEnd, Server, group_context


class SynchronousRounds(Policy):
    """K weight sets, K disjoint client groups per round, and a barrier at its end."""

    sequential = False
    """Send group k+1 only when group k is aggregated."""

    def __init__(self, cfg: Config, num_weight_sets: int):
        super().__init__(cfg)
        self.num_weight_sets = num_weight_sets
        self.round = 0
        """The latest round started."""
        self.round_start_s = 0.0
        self._open = False
        self._groups: list[list[int]] = []
        self._epochs: list[tuple[float, ...]] = []
        """Each group's local epochs this round, planned at its start."""
        self._ready: dict[int, float] = {}
        self._queued: list[Plan] = []

    def plan(self, server: Server) -> list[Plan]:
        """A new round's groups once the last round has ended; sequential: the next group."""
        if self._queued:
            queued, self._queued = self._queued, []
            return queued
        if self._open or self.round >= self.cfg.strategy.num_rounds:
            return []
        self.round += 1
        self._open = True
        self._ready = {}
        self._groups = self.plan_groups(server, self.round)
        self._epochs = [server.local_epochs(ws, group) for ws, group in enumerate(self._groups)]
        count = 1 if self.sequential else self.num_weight_sets
        return [self._plan(ws, self.round_start_s) for ws in range(count)]

    def _plan(self, ws: int, start_s: float) -> Plan:
        return Plan(ws, self.round, tuple(self._groups[ws]), start_s, self._epochs[ws])

    def plan_groups(self, server: Server, server_round: int) -> list[list[int]]:
        """Sample this round's online clients and split them into K disjoint groups."""
        s = self.cfg.strategy
        count = num_sampled(server.num_clients, s.fraction_train, s.min_train_nodes)
        sampled = server.sample(server_round, count, rng_for(self.cfg.seed, "sample", server_round))
        if len(sampled) < self.num_weight_sets:
            # Too few online clients for K groups: one each while they last, and the
            # sets left without any miss quorum this round.
            empty: list[list[int]] = [[] for _ in range(self.num_weight_sets - len(sampled))]
            return [[c] for c in sampled] + empty
        return split_clients(
            s.group_policy,
            sampled,
            self.num_weight_sets,
            rng_for(self.cfg.seed, "split", server_round),
            server.sizes(sampled),
            group_context(self.cfg, server, server_round),
        )

    def finished(self, job: Finished, server: Server) -> RoundEnd | None:
        """The round ends when its last group is aggregated."""
        ws = job.plan.weight_set
        self._ready[ws] = job.ready_s
        if self.sequential and ws + 1 < self.num_weight_sets:
            self._queued.append(self._plan(ws + 1, job.ready_s))
        if len(self._ready) < self.num_weight_sets:
            return None
        end = RoundEnd(
            self.round,
            tuple(range(self.num_weight_sets)),
            self.round_start_s,
            max(self._ready.values()),
        )
        self.round_start_s = end.end_s
        self._open = False
        return end

    def done(self) -> bool:
        return not self._open and self.round >= self.cfg.strategy.num_rounds

    def state(self) -> dict[str, Any]:
        """The last round ended and when; a checkpoint is taken at a round's end."""
        return {"round": self.round, "round_start_s": self.round_start_s}

    def load_state(self, state: dict[str, Any], arrays: dict) -> None:
        self.round = int(state["round"])
        self.round_start_s = float(state["round_start_s"])

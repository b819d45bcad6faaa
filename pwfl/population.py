"""The simulated population: a number of clients, each known only once it is asked for.

A population of ``data.num_clients`` clients is never listed. A client's example
count, its device (:mod:`pwfl.devices`), whether it is online in a round and its
data all derive from ``(seed, client)`` when first needed, so sampling ``m`` of
``N`` clients costs ``O(m)`` in time and memory whatever ``N`` is: a round
costs what its cohort costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from pwfl.config import Config
from pwfl.seeding import rng_for

ClientSize = Callable[[int, int], int]
"""(client, weight set) -> the examples the client holds of that set's task."""


class Population:
    """The clients of one experiment, by id ``0 .. num_clients - 1``.

    Parameters
    ----------
    cfg
        The experiment (``data.num_clients``, ``clients.offline_prob``, the seed).
    size
        A client's example count for one weight set, found from (client id, set)
        (:func:`pwfl.data.client_size` of the set's task); each (client, task) is
        asked for once and kept.
    """

    def __init__(self, cfg: Config, size: ClientSize):
        self.cfg = cfg
        self.num_clients = cfg.data.num_clients
        self._size = size
        self._sizes: dict[tuple[int, int], int] = {}
        self._holds: dict[tuple[int, int], bool] = {}

    def size(self, client: int, weight_set: int = 0) -> int:
        """Examples client ``client`` holds of weight set ``weight_set``'s task."""
        key = (client, self.cfg.task_of(weight_set))
        if key not in self._sizes:
            self._sizes[key] = self._size(client, weight_set)
        return self._sizes[key]

    def sizes(self, clients: Sequence[int], weight_set: int = 0) -> dict[int, int]:
        """Example counts of some clients, of one weight set's task."""
        return {c: self.size(c, weight_set) for c in clients}

    def holds(self, client: int, weight_set: int) -> bool:
        """Whether ``client`` holds weight set ``weight_set``'s task
        (:meth:`pwfl.config.Config.holds`); each (client, set) is drawn once and kept,
        as the policies ask again every round."""
        key = (client, weight_set)
        if key not in self._holds:
            self._holds[key] = self.cfg.holds(client, weight_set)
        return self._holds[key]

    def online(self, client: int, server_round: int) -> bool:
        """Whether ``client`` can be sampled in ``server_round``: it is offline with
        probability ``clients.offline_prob``, drawn from ``(seed, round, client)``."""
        p = self.cfg.clients.offline_prob
        return p == 0 or self._draw(client, server_round) >= p

    def period_at(self, at: float) -> int:
        """The online period holding simulated time ``at`` (1 from the start): what
        :meth:`online` takes as its round for policies without a round barrier."""
        return int(at // self.cfg.clients.online_period_s) + 1

    def next_period_s(self, at: float) -> float:
        """When the online period after the one holding ``at`` starts."""
        return self.period_at(at) * self.cfg.clients.online_period_s

    def _draw(self, client: int, server_round: int) -> float:
        return float(rng_for(self.cfg.seed, "offline", server_round, client).random())

    def eligible(self, server_round: int, exclude: Sequence[int], limit: int, rng) -> list[int]:
        """The online clients not in ``exclude``: all of them (sorted) when the population
        is at most ``limit`` clients, else a uniform random ``limit`` of them.

        The pool from which a policy without a round barrier draws a group: exact
        for the populations one can list, a fair sample of any other.
        """
        if self.num_clients <= limit:
            barred = set(exclude)
            return [
                c
                for c in range(self.num_clients)
                if c not in barred and self.online(c, server_round)
            ]
        return sorted(self.sample(server_round, limit, rng, exclude))

    def sample(
        self,
        server_round: int,
        count: int,
        rng: np.random.Generator,
        exclude: Sequence[int] = (),
    ) -> list[int]:
        """``count`` distinct online clients, uniformly at random (not in ``exclude``);
        fewer when fewer are online: an offline client is never sampled.

        The candidates are a uniform random subset of the population in a random
        order (``Generator.choice`` without replacement, which costs ``O(m)`` for
        a sample much smaller than the population); the first ``count`` of them
        that are online and not excluded are the sample. So it costs ``O(count)``
        when few clients are offline. A population with fewer eligible clients
        gives all of them (the caller records the shortfall).
        """
        barred = set(exclude)
        p = self.cfg.clients.offline_prob
        count = min(count, self.num_clients - len(barred))
        if p == 0 and not barred:
            return [int(c) for c in rng.choice(self.num_clients, size=count, replace=False)]
        # Enough candidates that ``count`` of them are likely eligible; a shortfall
        # draws four times as many, up to the whole population.
        need = math.ceil((count + len(barred)) / (1 - p)) + 16
        while True:
            draw = min(self.num_clients, need)
            order = rng.choice(self.num_clients, size=draw, replace=False)
            picked = [
                int(c) for c in order if int(c) not in barred and self.online(int(c), server_round)
            ][:count]
            if len(picked) == count or draw == self.num_clients:
                break
            need *= 4
        return picked

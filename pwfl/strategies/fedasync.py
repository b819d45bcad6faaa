"""FedAsync: every client update is mixed into the model at once, discounted by its staleness.

Xie, Koyejo and Gupta, "Asynchronous Federated Optimization", 2019
(arXiv:1903.03934), Algorithm 1 with the polynomial staleness function. When
a client's model ``x_new`` arrives, trained from the global model of ``τ`` server
updates ago (its staleness ``t - τ``), the server sets

    x_t = (1 - α_t) x_{t-1} + α_t x_new,    α_t = α s(t - τ),    s(t - τ) = (t - τ + 1)^-a

(``α``: ``alpha``; ``a``: ``staleness_exponent``; a fresh update has
``s = 1``) and sends the new model to a free client at once. Every update is a
server step and a round of the records (``strategy.num_rounds`` counts them).
Clients are dispatched as in FedBuff (:mod:`pwfl.strategies.fedbuff`):
``concurrency`` clients train at any moment, each slot refilled with a free
online client drawn from the seed when its client's update arrives. Integer
arrays (batch-norm counters) are not mixed: the arriving client's values are kept.

Settings, in the strategy's own table (FedBuff's, ``[strategy.fedbuff]``, is not read:
a FedAsync run refuses it; ``check_config`` and ``clients_in_flight`` are FedBuff's,
reading this table's ``concurrency``)::

    [strategy.fedasync]
    alpha = 0.6              # the paper's experiments use 0.6 and 0.9
    staleness_exponent = 0.5 # the paper's polynomial s(t - τ) uses a = 0.5
    concurrency = 0          # 0: as many as the other strategies sample per round
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from pwfl.aggregation import Arrays, Update
from pwfl.config import ranged
from pwfl.quorum import OK
from pwfl.strategies.base import Aggregation, Finished, Server
from pwfl.strategies.fedbuff import FedBuff, staleness_weight


@dataclass(frozen=True)
class FedAsyncSettings:
    """FedAsync's own keys (Xie et al., 2019), its table ``[strategy.fedasync]``."""

    alpha: float = ranged(0.6, gt=0, le=1)
    """The mixing weight α of a fresh update, in (0, 1]."""
    staleness_exponent: float = ranged(0.5, ge=0)
    """a in s(t - τ) = (t - τ + 1)^-a; 0 ignores staleness."""
    concurrency: int = ranged(0, ge=0)
    """Clients training at any moment, at most data.num_clients; 0: as many as the
    other strategies sample per round (fraction_train, min_train_nodes)."""


class FedAsync(FedBuff):
    """Asynchronous updates, each mixed in at once with a staleness-discounted weight."""

    name = "fedasync"
    Settings = FedAsyncSettings  # type: ignore[assignment]  # its own table, not a FedBuff one

    def steps_every(self) -> int:
        """Every update is a step (and the failure streak's unit)."""
        return 1

    each_update = True  # each update is weighed on its own in a buffered step

    def aggregations(self, job: Finished, server: Server) -> list[Aggregation]:
        """Mix the client's model into the global one now."""
        if job.status != OK or not job.updates:
            return []
        s = self.settings
        weight = s.alpha * staleness_weight(job.staleness, s.staleness_exponent)
        step = functools.partial(mix, base=server.weights(0), weight=weight)
        return [Aggregation(0, step, job.updates, (job.job,), waits=False)]


def mix(updates: list[Update], base: Arrays, weight: float) -> Arrays:
    """``(1 - weight) base + weight x_new`` for the one update's model ``x_new``."""
    ((arrays, _),) = updates
    mixed = {}
    for name, value in arrays.items():
        old = base[name]
        if np.issubdtype(old.dtype, np.floating):
            mixed[name] = ((1.0 - weight) * old + weight * value).astype(old.dtype)
        else:
            mixed[name] = value
    return mixed

"""Parallel-weight federated learning: K global weight sets trained at once on disjoint groups.

Each round the server samples clients, splits them into K disjoint groups
(for K=2 a random subset S and its complement S'), sends group k the weight
set k in one push, so all K groups train at the same time, and aggregates each
group on the executor as soon as its own replies are in. The round ends when
the last group is aggregated (:mod:`pwfl.strategies.rounds`). With K=1 and no
merging this is FedAvg, step for step.

``SequentialPWFL`` is the baseline the idea is measured against: the same K
weight sets and the same client split, but group k+1 is sent only after
group k has been aggregated. ``strategy.mode = "async"`` drops the round
barrier (:mod:`pwfl.strategies.async_pwfl`).
"""

from __future__ import annotations

from typing import Any

from pwfl.aggregation import AggregateFn, Arrays, load_aggregator, mean_of_weight_sets
from pwfl.config import Config, num_sampled, parse_merge
from pwfl.errors import ConfigError
from pwfl.strategies.base import RoundEnd, Server
from pwfl.strategies.rounds import SynchronousRounds


class PWFL(SynchronousRounds):
    """K weight sets, K disjoint client groups per round, all sent at the round's start."""

    name = "pwfl"
    weight_set_tables = True

    def __init__(self, cfg: Config):
        super().__init__(cfg, cfg.strategy.k)
        self.aggregate = configured_aggregator(cfg)
        self.merge_kind, self.merge_every = parse_merge(cfg.strategy.merge)

    def merge(self, end: RoundEnd, server: Server) -> Arrays | None:
        """Average the weight sets when the merge policy says so (every:N sets them all to it)."""
        due = (self.merge_kind == "every" and end.round % self.merge_every == 0) or (
            self.merge_kind == "final" and end.round == self.cfg.strategy.num_rounds
        )
        if not due:
            return None
        merged = mean_of_weight_sets([server.weights(ws) for ws in range(self.num_weight_sets)])
        if self.merge_kind == "every":
            for ws in range(self.num_weight_sets):
                server.set_weights(ws, {k: v.copy() for k, v in merged.items()})
        return merged

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """K groups need K sampled clients."""
        check_group_count(cfg)


class SequentialPWFL(PWFL):
    """The same K weight sets and client split, trained one group after another."""

    name = "pwfl-sequential"

    sequential = True


def check_group_count(cfg: Config) -> None:
    """``strategy.k`` must not exceed the clients sampled per round."""
    d, s = cfg.data, cfg.strategy
    sampled = num_sampled(d.num_clients, s.fraction_train, s.min_train_nodes)
    if s.k > sampled:
        raise ConfigError(
            f"config key 'strategy.k' = {s.k!r} is invalid: must be <= the {sampled} clients "
            "sampled per round (raise strategy.fraction_train or data.num_clients, or lower k)"
        )


def configured_aggregator(cfg: Config) -> AggregateFn:
    """The aggregation function named by ``strategy.aggregator``, parameters bound."""
    s = cfg.strategy
    tables: dict[str, dict[str, Any]] = {
        "trimmed-mean": {"beta": s.trim_beta},
        "krum": {"num_malicious": s.num_malicious},
        "multi-krum": {"num_malicious": s.num_malicious, "to_keep": s.krum_keep or None},
    }
    params = tables.get(s.aggregator, {})
    try:
        return load_aggregator(s.aggregator, **params)
    except ValueError as err:
        raise ConfigError(f"config key 'strategy.aggregator': {err}") from None

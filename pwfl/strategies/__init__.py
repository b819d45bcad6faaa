"""Strategies by name: the policies the round engine runs (``fedavg``, ``pwfl``, ...).

``build_policy`` turns the config into the policy object; a strategy is one
module here and one entry in ``STRATEGIES``.
"""

from __future__ import annotations

from collections.abc import Callable

from pwfl.aggregation import AggregateFn, load_aggregator
from pwfl.config import Config
from pwfl.errors import ConfigError
from pwfl.strategies.async_pwfl import AsyncPWFL
from pwfl.strategies.base import Policy
from pwfl.strategies.fedavg import FedAvg
from pwfl.strategies.fedbuff import FedBuff
from pwfl.strategies.pwfl import PWFL, SequentialPWFL

MODES: dict[str, type[PWFL] | type[AsyncPWFL]] = {"sync": PWFL, "async": AsyncPWFL}
"""``strategy.mode`` of the pwfl strategy -> its policy: a round barrier over the K
groups, or none."""


def _pwfl(cfg: Config) -> Policy:
    return MODES[cfg.strategy.mode](cfg, aggregator_from_config(cfg))


STRATEGIES: dict[str, Callable[[Config], Policy]] = {
    "fedavg": FedAvg,
    "pwfl": _pwfl,
    "pwfl-sequential": lambda cfg: SequentialPWFL(cfg, aggregator_from_config(cfg)),
    "fedbuff": FedBuff,
}
"""Strategy name -> the policy it runs, built from the config."""


def build_policy(cfg: Config) -> Policy:
    """The policy named by ``cfg.strategy.name``."""
    return STRATEGIES[cfg.strategy.name](cfg)


def aggregator_from_config(cfg: Config) -> AggregateFn:
    """The aggregation function named by ``strategy.aggregator``, parameters bound."""
    s = cfg.strategy
    params = {
        "trimmed-mean": {"beta": s.trim_beta},
        "krum": {"num_malicious": s.num_malicious},
        "multi-krum": {"num_malicious": s.num_malicious, "to_keep": s.krum_keep or None},
    }.get(s.aggregator, {})
    try:
        return load_aggregator(s.aggregator, **params)
    except ValueError as err:
        raise ConfigError(f"config key 'strategy.aggregator': {err}") from None


__all__ = [
    "MODES",
    "STRATEGIES",
    "AsyncPWFL",
    "FedAvg",
    "FedBuff",
    "PWFL",
    "Policy",
    "SequentialPWFL",
    "build_policy",
]

"""Strategies by name: the policies the round engine runs (``fedavg``, ``pwfl``, ...).

A strategy is one module here and one entry in :data:`STRATEGIES`: its policy
class (a :class:`~pwfl.strategies.base.Policy`), which checks its own settings
and says how many clients it keeps in flight. ``build_policy`` turns the config
into the policy object.
"""

from __future__ import annotations

from pwfl.aggregation import AggregateFn
from pwfl.config import Config
from pwfl.errors import ConfigError
from pwfl.strategies.async_pwfl import AsyncPWFL
from pwfl.strategies.base import Policy
from pwfl.strategies.fedast import FedAST
from pwfl.strategies.fedasync import FedAsync
from pwfl.strategies.fedavg import FedAvg
from pwfl.strategies.fedbuff import FedBuff
from pwfl.strategies.fedprox import FedProx
from pwfl.strategies.pwfl import PWFL, SequentialPWFL, configured_aggregator

MODES: dict[str, type[Policy]] = {"sync": PWFL, "async": AsyncPWFL}
"""``strategy.mode`` of the pwfl strategy -> its policy: a round barrier over the K
groups, or none."""

STRATEGIES: dict[str, type[Policy]] = {
    cls.name: cls for cls in (FedAvg, PWFL, SequentialPWFL, FedBuff, FedAsync, FedProx, FedAST)
}
"""Strategy name -> its policy class (each class names itself)."""


def policy_class(cfg: Config) -> type[Policy]:
    """The policy class ``cfg`` names (``strategy.name``, and its mode for pwfl)."""
    s = cfg.strategy
    if s.name == PWFL.name:
        return MODES[s.mode]
    if s.mode != "sync":
        raise ConfigError(
            f"config key 'strategy.mode' = {s.mode!r} is invalid: async applies to "
            f"strategy.name = {PWFL.name} only"
        )
    return STRATEGIES[s.name]


def build_policy(cfg: Config) -> Policy:
    """The policy named by ``cfg.strategy.name``."""
    return policy_class(cfg)(cfg)


def aggregator_from_config(cfg: Config) -> AggregateFn:
    """The aggregation function named by ``strategy.aggregator``, parameters bound."""
    return configured_aggregator(cfg)


__all__ = [
    "MODES",
    "STRATEGIES",
    "AsyncPWFL",
    "FedAsync",
    "FedAvg",
    "FedBuff",
    "FedProx",
    "PWFL",
    "Policy",
    "SequentialPWFL",
    "build_policy",
    "policy_class",
]

"""Server strategies by name: fedavg, pwfl, pwfl-sequential."""

from __future__ import annotations

from collections.abc import Sequence

from flwr.serverapp.strategy import Strategy

from pwfl.aggregation import AggregateFn, load_aggregator, make_executor
from pwfl.callbacks import Callback
from pwfl.clock import make_profiles
from pwfl.config import Config
from pwfl.errors import ConfigError
from pwfl.strategies.async_pwfl import AsyncPWFL
from pwfl.strategies.common import ClientDirectory
from pwfl.strategies.fedavg import EvaluateFn, RecordingFedAvg
from pwfl.strategies.pwfl import PWFL, SequentialPWFL


def build_strategy(
    cfg: Config,
    directory: ClientDirectory,
    evaluate_weights: EvaluateFn,
    callbacks: Sequence[Callback] = (),
) -> Strategy:
    """The strategy named by ``cfg.strategy.name``, wired to its callbacks."""
    name = cfg.strategy.name
    profiles = make_profiles(cfg.clients, directory.clients, cfg.seed)
    if name == "fedavg":
        return RecordingFedAvg(cfg, directory, evaluate_weights, profiles, callbacks)
    cls = {"pwfl": PWFL, "pwfl-sequential": SequentialPWFL}[name]
    if cfg.strategy.mode == "async":
        cls = AsyncPWFL
    return cls(
        cfg,
        directory,
        evaluate_weights,
        make_executor(cfg.strategy.executor, workers=cfg.strategy.k),
        aggregator_from_config(cfg),
        profiles,
        callbacks,
    )


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


__all__ = ["build_strategy", "AsyncPWFL", "PWFL", "SequentialPWFL", "RecordingFedAvg"]

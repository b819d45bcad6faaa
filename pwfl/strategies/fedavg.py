"""FedAvg: one global model, trained each round by a seeded sample of clients.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017. This is the synchronous round
(:mod:`pwfl.strategies.rounds`) with one weight set and Flower's own FedAvg
aggregation (``aggregate_arrayrecords`` for the weights; the engine reports
every strategy's training loss with Flower's ``aggregate_metricrecords``), so
its numbers are those of ``flwr.serverapp.strategy.FedAvg``: the test suite
runs Flower's unmodified FedAvg loop beside it and compares the weights bit for
bit. What pwfl adds: clients are sampled from the experiment seed (Flower draws
from the unseeded ``random`` module), replies are aggregated in client order (so
float sums do not depend on arrival order), and every round is priced on the
simulated clock and recorded.
"""

from __future__ import annotations

from pwfl.aggregation import flower_fedavg
from pwfl.config import Config
from pwfl.errors import ConfigError
from pwfl.strategies.rounds import SynchronousRounds


class FedAvg(SynchronousRounds):
    """Synchronous rounds of one weight set, aggregated by Flower's FedAvg."""

    name = "fedavg"

    aggregate = staticmethod(flower_fedavg)

    def __init__(self, cfg: Config):
        super().__init__(cfg, num_weight_sets=1)

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        one_model_only(cfg, "fedavg")


def one_model_only(cfg: Config, name: str) -> None:
    """The rules of a strategy with one model and its own aggregation: no other
    aggregator, no server optimiser."""
    s = cfg.strategy
    if s.aggregator != "fedavg":
        raise ConfigError(
            f"config key 'strategy.aggregator' = {s.aggregator!r} is invalid: the {name} "
            "strategy aggregates its own way; use strategy.name = pwfl with k = 1 for another "
            "aggregator"
        )
    if s.server_opt != "none":
        raise ConfigError(
            f"config key 'strategy.server_opt' = {s.server_opt!r} is invalid: use "
            "strategy.name = pwfl with k = 1 for a server optimiser on one model"
        )

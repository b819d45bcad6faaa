"""FedAvg: one global model, trained each round by a seeded sample of clients.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017. This is the round engine with one weight
set and Flower's own FedAvg aggregation (``aggregate_arrayrecords`` for the
weights; the engine reports every strategy's training loss with Flower's
``aggregate_metricrecords``), so its numbers are
those of ``flwr.serverapp.strategy.FedAvg``: the test suite runs Flower's
unmodified FedAvg loop beside it and compares the weights bit for bit. What
pwfl adds: clients are sampled from the experiment seed (Flower draws from the
unseeded ``random`` module), replies are aggregated in client order (so float
sums do not depend on arrival order), and every round is priced on the
simulated clock and recorded.
"""

from __future__ import annotations

from pwfl.aggregation import flower_fedavg
from pwfl.config import Config
from pwfl.strategies.pwfl import PWFL


class FedAvg(PWFL):
    """The PWFL round with a single weight set, aggregated by Flower's FedAvg."""

    def __init__(self, cfg: Config):
        super().__init__(cfg, flower_fedavg, num_weight_sets=1)

"""Server-side optimisers (FedAvgM, FedAdam, FedYogi, FedAdagrad), one per weight set.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021 (FedAdam, FedYogi,
FedAdagrad); Hsu et al., "Measuring the Effects of Non-Identical Data
Distribution for Federated Visual Classification", 2019 (FedAvgM).

Flower implements these inside its strategies' ``aggregate_train``. To use
Flower's own update rules, not a copy, each weight set gets its own Flower
strategy object, which keeps that set's optimiser state (momentum, second
moments), and the group's aggregate is handed to it as a single reply of
weight 1: the weighted mean of one reply is the reply itself, so what comes
back is exactly Flower's optimiser step from the set's current weights
towards the aggregate. Any aggregator and compression mode can come first.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvgM, FedYogi
from flwr.serverapp.strategy.fedopt import FedOpt

from pwfl.aggregation import Arrays
from pwfl.config import StrategyConfig
from pwfl.transport import ARRAYS, METRICS, WEIGHT_KEY, to_numpy, to_record

OPTIMIZERS: dict[str, type[FedAvgM] | type[FedOpt] | None] = {
    "none": None,
    "fedavgm": FedAvgM,
    "fedadam": FedAdam,
    "fedyogi": FedYogi,
    "fedadagrad": FedAdagrad,
}
"""Server optimisers by name (``strategy.server_opt``) and the Flower strategy whose
update rule each one applies; ``none`` applies none."""


class _AggregateAsReply:
    """The part of a reply Message that Flower's aggregate_train reads.

    A real Message can only be built inside a running Flower app; the
    optimiser step needs just the content and the error flag.
    """

    def __init__(self, content: RecordDict):
        self.content = content

    def has_error(self) -> bool:
        return False


class ServerOptimizer:
    """Flower's server optimiser ``name`` for one weight set."""

    def __init__(self, cfg: StrategyConfig):
        flower_cls = OPTIMIZERS.get(cfg.server_opt)
        if flower_cls is None:
            raise ValueError(f"unknown server optimiser '{cfg.server_opt}'")
        # FedAvgM takes its learning rate and momentum under names of its own; the
        # FedOpt family calls the rate eta. server_lr = 0 keeps Flower's default.
        self._flower: FedAvgM | FedOpt
        if not issubclass(flower_cls, FedOpt):
            self._flower = flower_cls(
                server_learning_rate=cfg.server_lr or 1.0, server_momentum=cfg.server_momentum
            )
        else:
            self._flower = flower_cls(eta=cfg.server_lr) if cfg.server_lr > 0 else flower_cls()

    def state(self) -> dict[str, np.ndarray]:
        """The optimiser's moments by name (empty before its first step), for checkpoints."""
        flower = self._flower
        if isinstance(flower, FedAvgM):
            moments = flower.momentum_vector or []
            return {f"momentum/{i}": np.asarray(v) for i, v in enumerate(moments)}
        out = {}
        for attr in ("m_t", "v_t"):
            for name, value in (getattr(flower, attr) or {}).items():
                out[f"{attr}/{name}"] = np.asarray(value)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned."""
        flower = self._flower
        if isinstance(flower, FedAvgM):
            moments = sorted((int(k.split("/")[1]), v) for k, v in state.items())
            flower.momentum_vector = [v for _, v in moments] or None
            return
        for attr in ("m_t", "v_t"):
            prefix = attr + "/"
            values = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            setattr(flower, attr, values or None)

    def step(self, server_round: int, current: Arrays, aggregated: Arrays) -> Arrays:
        """New weights after one optimiser step from ``current`` towards ``aggregated``."""
        flower = self._flower
        if isinstance(flower, FedAvgM):
            flower.current_arrays = to_record(current)
        else:  # FedOpt keeps the weights it sent as NumPy arrays
            flower.current_arrays = {k: v.copy() for k, v in current.items()}
        reply = _AggregateAsReply(
            RecordDict({ARRAYS: to_record(aggregated), METRICS: MetricRecord({WEIGHT_KEY: 1})})
        )
        arrays, _ = flower.aggregate_train(server_round, [reply])  # type: ignore[list-item]
        if not isinstance(arrays, ArrayRecord):
            raise RuntimeError("the server optimiser returned no weights")
        new = to_numpy(arrays)
        # Optimiser maths turns integer counters into floats; keep the model's dtypes.
        return {k: v.astype(current[k].dtype, copy=False) for k, v in new.items()}

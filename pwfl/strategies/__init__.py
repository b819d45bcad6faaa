"""Server strategies by name: fedavg, pwfl, pwfl-sequential."""

from __future__ import annotations

from collections.abc import Sequence

from flwr.serverapp.strategy import Strategy

from pwfl.aggregation import get_aggregator, make_executor
from pwfl.callbacks import Callback
from pwfl.config import Config
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
    if name == "fedavg":
        return RecordingFedAvg(cfg, directory, evaluate_weights, callbacks)
    cls = {"pwfl": PWFL, "pwfl-sequential": SequentialPWFL}[name]
    return cls(
        cfg,
        directory,
        evaluate_weights,
        make_executor(cfg.strategy.executor, workers=cfg.strategy.k),
        get_aggregator("fedavg"),
        callbacks,
    )


__all__ = ["build_strategy", "PWFL", "SequentialPWFL", "RecordingFedAvg"]

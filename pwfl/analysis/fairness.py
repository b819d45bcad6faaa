"""Fairness and makespan across the weight sets of one run: the worst set, the spread, the last.

In multi-model federated learning every weight set is a model someone needs
(Bhuyan and Moharir, "Multi-Model Federated Learning", COMSNETS 2022),
so a run is judged by its worst model and by when the last one is ready, not
only by the mean over its sets. Each function here takes one number per weight
set of ONE run (its final accuracy, or its first time at its target) and
returns one number for the run; :func:`pwfl.analysis.summarize_comparison`
then gives the mean and the std of it over seeds.

Usage::

    targets = set_targets(0.9, ["0", "1"])          # {"0": 0.9, "1": 0.9}
    worst_accuracy(pd.Series({"0": 0.88, "1": 0.92}))   # 0.88
    makespan_s(pd.Series({"0": 4.0, "1": 2.0}))         # 4.0

Two quantities one might expect here are already ``summary.csv`` columns: the
mean accuracy over the sets is the ``all`` row's ``final_accuracy`` (the mean of
``SET_MEANS`` over sets), and the best set's is ``best_of_k_final_accuracy``;
the lowest is :func:`worst_accuracy`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

FAIRNESS_METRICS = ["worst_accuracy", "accuracy_spread_std", "makespan_s", "first_target_s"]
"""The ``all`` row's numbers of this module, in ``summary.csv``'s order."""
EVERY_SEED = ["makespan_s", "first_target_s"]
"""Numbers whose mean over seeds is NaN when one seed's is: averaging the seeds that
finished would flatter a strategy that sometimes never does."""


def set_targets(
    target: float | Mapping[str, float], weight_sets: Iterable[str]
) -> dict[str, float]:
    """The target accuracy of each weight set: its own, or the one target for all.

    This is where a per-set target enters the summaries: one target
    (``strategy.target_accuracy``) for every set, or a mapping that gives each set
    its own, as ``[[weight_set]]`` tables that set ``strategy.target_accuracy`` do
    (:meth:`pwfl.config.Config.targets`: a multi-model run whose tasks differ in how
    hard they are).

    Parameters
    ----------
    target
        One accuracy for every set, or weight set (text, as ``rounds.csv``'s
        ``weight_set``) -> its accuracy.
    weight_sets
        The run's weight sets.

    Returns
    -------
    dict
        Weight set -> target.

    Raises
    ------
    KeyError
        When a mapping lacks one of the sets.
    """
    if isinstance(target, Mapping):
        missing = [ws for ws in weight_sets if ws not in target]
        if missing:
            raise KeyError(f"no target accuracy for weight set {', '.join(missing)}")
        return {ws: float(target[ws]) for ws in weight_sets}
    return {ws: float(target) for ws in weight_sets}


def worst_accuracy(final: pd.Series) -> float:
    """The lowest final server test accuracy over the run's weight sets.

    Parameters
    ----------
    final
        One run's final accuracy of each weight set (its last round's ``accuracy``).

    Returns
    -------
    float
        The minimum over the sets (``accuracy_min``); NaN without sets.
    """
    return float(final.min()) if len(final) else float("nan")


def accuracy_spread_std(final: pd.Series) -> float:
    """Standard deviation over the run's weight sets of their final accuracy.

    The population deviation (ddof 0): the K sets are all the sets of the run,
    not a sample of them, so one set has a spread of 0.

    Parameters
    ----------
    final
        One run's final accuracy of each weight set.

    Returns
    -------
    float
        ``sqrt(mean((a_k - mean(a))^2))`` over the sets k; NaN without sets.
    """
    return float(np.std(final.to_numpy(dtype="float64"))) if len(final) else float("nan")


def makespan_s(time_to_target: pd.Series) -> float:
    """Simulated time until every weight set of the run has reached its target.

    Parameters
    ----------
    time_to_target
        One run's ``sim_time_s`` at which each weight set first reached its
        own target, NaN for a set that never did.

    Returns
    -------
    float
        The maximum over the sets; NaN when one set never reached its target
        (the run never finished every task), or without sets.
    """
    if not len(time_to_target) or time_to_target.isna().any():
        return float("nan")
    return float(time_to_target.max())


def first_target_s(time_to_target: pd.Series) -> float:
    """Simulated time until the first weight set of the run reached its target.

    Parameters
    ----------
    time_to_target
        As for :func:`makespan_s`.

    Returns
    -------
    float
        The minimum over the sets that reached their target; NaN when none did.
    """
    reached = time_to_target.dropna()
    return float(reached.min()) if len(reached) else float("nan")


def fairness_numbers(per_set: pd.DataFrame) -> dict[str, float]:
    """The numbers of :data:`FAIRNESS_METRICS` of one run.

    Parameters
    ----------
    per_set
        One row per weight set of the run with ``final_accuracy`` and
        ``sim_time_to_target_s`` (each set's first crossing of its own target).

    Returns
    -------
    dict
        ``worst_accuracy``, ``accuracy_spread_std``, ``makespan_s``, ``first_target_s``.
    """
    final, times = per_set["final_accuracy"], per_set["sim_time_to_target_s"]
    return {
        "worst_accuracy": worst_accuracy(final),
        "accuracy_spread_std": accuracy_spread_std(final),
        "makespan_s": makespan_s(times),
        "first_target_s": first_target_s(times),
    }

"""Aggregation functions (client updates -> one weight set) and the executors that run them.

An *update* is ``(arrays, num_examples)`` with ``arrays`` a name -> ndarray dict.
An aggregation function maps a list of updates to one arrays dict; it is plain
NumPy, so it runs the same in this process, in a thread pool, or as a Ray task::

    executor = make_executor("ray")
    futures = [executor.submit(weighted_mean, group) for group in groups]
    weights = [f.result() for f in futures]    # K groups aggregated concurrently

Executors hide the transport: strategies ask for ``submit`` and never import Ray.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

Arrays = dict[str, np.ndarray]
Update = tuple[Arrays, float]
AggregateFn = Callable[[list[Update]], Arrays]


def weighted_mean(updates: list[Update]) -> Arrays:
    """FedAvg: the mean of the clients' arrays weighted by their example counts.

    McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017, Algorithm 1. The operations follow the
    order of Flower's ``aggregate_arrayrecords`` (normalise the weights, then
    accumulate ``array * weight`` in reply order), so one PWFL weight set
    reproduces Flower's FedAvg to the last bit. Integer arrays (batch-norm
    counters) are averaged and cast back to their dtype.
    """
    if not updates:
        raise ValueError("cannot aggregate an empty group of updates")
    total = sum(n for _, n in updates)
    if total <= 0:
        raise ValueError("cannot aggregate updates that hold no examples")
    factors = [n / total for _, n in updates]
    acc: Arrays = {}
    for (arrays, _), factor in zip(updates, factors, strict=True):
        for name, value in arrays.items():
            if name not in acc:
                acc[name] = value * factor
            else:
                acc[name] += value * factor
    first = updates[0][0]
    return {name: _restore_dtype(value, first[name].dtype) for name, value in acc.items()}


def mean_of_weight_sets(weight_sets: list[Arrays]) -> Arrays:
    """Unweighted mean of K weight sets: the merge of PWFL's merge policy."""
    return weighted_mean([(arrays, 1.0) for arrays in weight_sets])


def _restore_dtype(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # np.asarray: arithmetic on 0-d arrays (batch-norm counters) yields scalars.
    if np.issubdtype(dtype, np.floating):
        return np.asarray(value, dtype=dtype)
    return np.asarray(np.rint(value), dtype=dtype)


AGGREGATORS: dict[str, AggregateFn] = {"fedavg": weighted_mean}


class Timed:
    """An aggregation function that also returns its own run time in seconds.

    The time is taken where the function runs (a Ray worker, a thread), so it
    measures aggregation, not queueing or transfer. It lives in this module,
    which imports only NumPy, so a fresh Ray worker unpickles it quickly.
    """

    def __init__(self, fn: AggregateFn):
        self.fn = fn

    def __call__(self, updates: list[Update]) -> tuple[Arrays, float]:
        """Aggregate ``updates``; return the weights and the seconds it took."""
        start = time.perf_counter()
        result = self.fn(updates)
        return result, time.perf_counter() - start


def get_aggregator(name: str) -> AggregateFn:
    """Return a registered aggregation function by name."""
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator '{name}'; choose one of {', '.join(AGGREGATORS)}")
    return AGGREGATORS[name]


class Handle(Protocol):
    """A pending aggregation; ``result()`` blocks until it is done."""

    def result(self) -> Arrays: ...


class Executor(Protocol):
    """Runs aggregation functions, possibly concurrently."""

    name: str

    def submit(self, fn: AggregateFn, updates: list[Update]) -> Handle: ...

    def shutdown(self) -> None: ...


class _Done:
    def __init__(self, value: Arrays):
        self._value = value

    def result(self) -> Arrays:
        return self._value


class SerialExecutor:
    """Aggregates in the calling thread, one group after another."""

    name = "serial"

    def submit(self, fn: AggregateFn, updates: list[Update]) -> Handle:
        """Run ``fn(updates)`` now and return its finished handle."""
        return _Done(fn(updates))

    def shutdown(self) -> None:
        """Nothing to release."""


class ThreadExecutor:
    """Aggregates in a thread pool of this process.

    NumPy releases the GIL inside its array loops, so large arrays aggregate in
    parallel without copying them to another process.
    """

    name = "threads"

    def __init__(self, max_workers: int | None = None):
        self._pool = ThreadPoolExecutor(max_workers=max_workers or os.cpu_count() or 2)

    def submit(self, fn: AggregateFn, updates: list[Update]) -> Handle:
        """Queue ``fn(updates)`` on the pool."""
        future: Future[Arrays] = self._pool.submit(fn, updates)
        return future

    def shutdown(self) -> None:
        """Stop the pool's threads."""
        self._pool.shutdown(wait=True)


class _RayHandle:
    def __init__(self, ref: Any):
        self._ref = ref

    def result(self) -> Arrays:
        import ray

        return ray.get(self._ref)


def _call(fn: AggregateFn, updates: list[Update]) -> Arrays:
    return fn(updates)


def _noop(updates: list[Update]) -> Arrays:
    return {}


class RayExecutor:
    """Aggregates each group as its own Ray task.

    The tasks ask for zero CPUs: Flower's client actors hold every CPU of the
    Ray session for the whole simulation, so a task that asked for one would
    wait behind them forever. Ray is started here only when no session is up
    (a deployment's ServerApp); in simulation the runner starts it first, so
    this executor and Flower's backend share one session.
    """

    name = "ray"

    def __init__(self, workers: int = 1) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        self._remote = ray.remote(num_cpus=0)(_call)
        # Start the worker processes now (while the clients train), not when
        # the first round's groups are waiting to be aggregated.
        self._warm = [self._remote.remote(_noop, []) for _ in range(workers)]

    def submit(self, fn: AggregateFn, updates: list[Update]) -> Handle:
        """Start ``fn(updates)`` as a Ray task."""
        return _RayHandle(self._remote.remote(fn, updates))

    def shutdown(self) -> None:
        """The Ray session belongs to the runner; nothing to stop here."""


def make_executor(name: str, workers: int = 1) -> Executor:
    """Build an executor by name (``ray``, ``threads``, ``serial``) for ``workers``
    concurrent aggregations."""
    if name == "ray":
        return RayExecutor(workers)
    if name == "threads":
        return ThreadExecutor(workers)
    if name == "serial":
        return SerialExecutor()
    raise ValueError(f"unknown executor '{name}'; choose ray, threads or serial")

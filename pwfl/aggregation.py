"""Aggregation functions (client updates -> one weight set) and the executors that run them.

An *update* is ``(arrays, num_examples)`` with ``arrays`` a name -> ndarray dict.
An aggregation function maps a list of updates to one arrays dict; it is plain
NumPy, so it runs the same in this process, in a thread pool, or as a Ray task::

    executor = make_executor("ray")
    futures = [executor.submit(weighted_mean, group) for group in groups]
    weights = [f.result() for f in futures]    # K groups aggregated concurrently

Executors hide the transport: strategies ask for ``submit`` and never import Ray.

Aggregators by name (``get_aggregator``): ``fedavg``, ``median``,
``trimmed-mean`` (``beta``), ``krum`` (``num_malicious``) and ``multi-krum``
(``num_malicious``, ``to_keep``). Parameters may arrive as strings from the
config, with dashes or underscores: ``get_aggregator("trimmed-mean", beta="0.1")``.
The robust rules reuse Flower's NumPy implementations in
``flwr.server.strategy.aggregate``, imported on first use, so importing this
module imports neither Flower nor Ray.

Your own aggregator is a module-level function (so it pickles into a Ray task)::

    def my_agg(updates: list[tuple[dict[str, np.ndarray], float]]) -> dict[str, np.ndarray]:
        ...  # one (arrays, num_examples) pair per client; return one arrays dict

and ``load_aggregator("mypackage.mymodule:my_agg")`` (or
``"mypackage.mymodule.my_agg"``) imports it; a spec without ``:`` or ``.`` is
looked up by name. Integer arrays (batch-norm counters) should come back with
their dtype, as ``weighted_mean`` does.

Why one module of about 610 lines: the aggregation rules and the executors that
run them are one concept, turning a group's updates into its weights; they are
kept together so that every strategy reaches both through this one interface
(``submit``), and none of it imports Flower or Ray at import time.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from pwfl.extensions import is_dotted, load_callable

Arrays = dict[str, np.ndarray]
Update = tuple[Arrays, float]
AggregateFn = Callable[[list[Update]], Arrays]


# Values per slice of the chunked weighted mean: 128K float32 values (512 KB) keep a
# slice of the sum and of one update's product in the CPU cache while every client's
# update is added to it.
CHUNK = 1 << 17


def weighted_mean(updates: list[Update]) -> Arrays:
    """FedAvg: the mean of the clients' arrays weighted by their example counts.

    McMahan et al., "Communication-Efficient Learning of Deep Networks from
    Decentralized Data", AISTATS 2017, Algorithm 1. The operations follow the
    order of Flower's ``aggregate_arrayrecords`` (normalise the weights, then
    accumulate ``array * weight`` in reply order), so one PWFL weight set
    reproduces Flower's FedAvg to the last bit. Integer arrays (batch-norm
    counters) are averaged and cast back to their dtype.

    Each array is summed slice by slice (``CHUNK`` values), every client's
    product written into one reused buffer: each value still gets the same
    operations in the same order (so the same bits), but the sum is read and
    written once instead of once per client, and no array is allocated per
    client. On 25M-value updates this made the mean several times faster
    (benchmarks/aggregation.py).
    """
    if not updates:
        raise ValueError("cannot aggregate an empty group of updates")
    total = sum(n for _, n in updates)
    if total <= 0:
        raise ValueError("cannot aggregate updates that hold no examples")
    factors = [n / total for _, n in updates]
    first = updates[0][0]
    out: Arrays = {}
    for name, value in first.items():
        flats = [np.asarray(arrays[name]).reshape(-1) for arrays, _ in updates]
        dtype = (flats[0][:1] * factors[0]).dtype  # numpy's own promotion rule
        acc = np.empty(flats[0].size, dtype=dtype)
        scratch = np.empty(min(CHUNK, acc.size), dtype=dtype)
        for start in range(0, acc.size, CHUNK):
            stop = min(start + CHUNK, acc.size)
            part, product = acc[start:stop], scratch[: stop - start]
            np.multiply(flats[0][start:stop], factors[0], out=part)
            for flat, factor in zip(flats[1:], factors[1:], strict=True):
                np.multiply(flat[start:stop], factor, out=product)
                part += product
        out[name] = _restore_dtype(acc.reshape(np.shape(value)), value.dtype)
    return out


def buffered_step(
    updates: list[Update],
    base: Arrays,
    server_lr: float = 1.0,
    statistics: frozenset[str] = frozenset(),
) -> Arrays:
    """FedBuff's server step: ``base + server_lr * sum_i w_i * delta_i``.

    Nguyen et al., "Federated Learning with Buffered Asynchronous Aggregation",
    AISTATS 2022, Algorithm 1 (the server update with SGD). ``updates`` are
    ``(delta_i, w_i)`` pairs: each client's change to the weights it received,
    with its weight already holding the staleness factor and the ``1/K`` of the
    buffer's mean. Deltas are summed in the order given.

    ``statistics`` names arrays that are running statistics, not parameters
    (batch norm's means, variances and counters). A stale client's delta is
    taken against weights the server has since moved, which for a variance can
    step below zero; for these the update carries the client's value itself,
    and the result is the ``w_i``-weighted mean of the values. Integer arrays
    come back rounded to their dtype.
    """
    if not updates:
        raise ValueError("cannot take a step without buffered updates")
    total_weight = sum(weight for _, weight in updates)
    out: Arrays = {}
    for name, value in base.items():
        if name not in updates[0][0]:  # an array the clients keep (a personal layer)
            out[name] = value
            continue
        dtype = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float64
        step = np.zeros(np.shape(value), dtype=dtype)
        for delta, weight in updates:
            step += weight * delta[name]
        if name in statistics:
            out[name] = _restore_dtype(step / total_weight, value.dtype)
        else:
            out[name] = _restore_dtype(value + server_lr * step, value.dtype)
    return out


def flower_fedavg(updates: list[Update]) -> Arrays:
    """FedAvg as Flower's own ``FedAvg.aggregate_train`` computes it.

    Flower's ``aggregate_arrayrecords`` on the updates in the order given. Its
    result keeps Flower's dtypes: integer arrays (batch-norm counters) come
    back as float64, as in Flower's loop, so that the ``fedavg`` strategy
    reproduces Flower's FedAvg exactly. The updates' arrays, decoded from the replies
    once, reach Flower as they are (:class:`pwfl.transport.DecodedArray`).
    """
    from flwr.app import MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

    from pwfl.transport import decoded_record

    if not updates:
        raise ValueError("cannot aggregate an empty group of updates")
    records = [
        RecordDict(
            {
                "arrays": decoded_record(arrays),
                "metrics": MetricRecord({"num-examples": n}),
            }
        )
        for arrays, n in updates
    ]
    return {k: v.numpy() for k, v in aggregate_arrayrecords(records, "num-examples").items()}


def flower_metric_mean(pairs: list[tuple[float, float]]) -> float:
    """Flower's ``aggregate_metricrecords`` of ``(num_examples, value)`` pairs (NaN for none)."""
    from flwr.app import MetricRecord, RecordDict
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

    if not pairs:
        return float("nan")
    records = [
        RecordDict({"metrics": MetricRecord({"num-examples": n, "value": value})})
        for n, value in pairs
    ]
    value = aggregate_metricrecords(records, "num-examples")["value"]
    assert isinstance(value, int | float)  # a mean of scalars is a scalar
    return float(value)


def mean_of_weight_sets(weight_sets: list[Arrays]) -> Arrays:
    """Unweighted mean of K weight sets: the merge of PWFL's merge policy."""
    return weighted_mean([(arrays, 1.0) for arrays in weight_sets])


def _restore_dtype(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    # np.asarray: arithmetic on 0-d arrays (batch-norm counters) yields scalars.
    if np.issubdtype(dtype, np.floating):
        return np.asarray(value, dtype=dtype)
    return np.asarray(np.rint(value), dtype=dtype)


def median(updates: list[Update]) -> Arrays:
    """Coordinate-wise median of the clients' arrays; example counts play no part.

    Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates", ICML 2018, Algorithm 1, option I. Computed by Flower's
    ``aggregate_median``: with an even number of clients a coordinate is the
    mean of its two middle values.
    """
    from flwr.server.strategy.aggregate import aggregate_median

    names, results = _to_flower(updates)
    # Flower annotates the weights int (example counts); its median never reads them.
    return _from_flower(names, aggregate_median(results), updates)  # type: ignore[arg-type]


def trimmed_mean(updates: list[Update], beta: float = 0.2) -> Arrays:
    """Coordinate-wise mean of the clients' arrays without the extreme values.

    Yin et al., "Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates", ICML 2018, Algorithm 1, option II. Computed by Flower's
    ``aggregate_trimmed_avg``, which drops ``floor(beta * n)`` values at each
    end of every coordinate: with ``beta=0.2`` five clients lose one value at
    each end, four or fewer lose none. Example counts play no part.

    Parameters
    ----------
    updates
        ``(arrays, num_examples)`` per client.
    beta
        Fraction cut at each end, in [0, 0.5).
    """
    from flwr.server.strategy.aggregate import aggregate_trimmed_avg

    names, results = _to_flower(updates)
    # Flower annotates the weights int (example counts); the trimmed mean never reads them.
    return _from_flower(names, aggregate_trimmed_avg(results, beta), updates)  # type: ignore[arg-type]


def krum(updates: list[Update], num_malicious: int = 0) -> Arrays:
    """The one client update closest to its ``n - f - 2`` nearest neighbours.

    Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
    Gradient Descent", NeurIPS 2017, the Krum rule. Computed by Flower's
    ``aggregate_krum``; its guarantee needs ``n > 2f + 2`` clients, and with
    fewer Flower scores each update by its ``max(1, n - f - 2)`` nearest ones.
    Only floating-point arrays enter the distances; see ``multi_krum``.

    Parameters
    ----------
    updates
        ``(arrays, num_examples)`` per client.
    num_malicious
        ``f``, the number of Byzantine clients to tolerate.
    """
    return _krum(updates, num_malicious, to_keep=0)


def multi_krum(updates: list[Update], num_malicious: int = 0, to_keep: int | None = None) -> Arrays:
    """The mean of the ``to_keep`` client updates with the best Krum scores.

    Blanchard et al., "Machine Learning with Adversaries: Byzantine Tolerant
    Gradient Descent", NeurIPS 2017, the Multi-Krum variant. Computed by
    Flower's ``aggregate_krum``, which weights the kept updates by their
    example counts (the paper averages them uniformly).

    Only floating-point arrays enter the distances: batch-norm counters differ
    by the clients' batch counts, and their squared differences would outweigh
    every weight. Integer arrays are the coordinate-wise median over all
    clients, cast back to their dtype.

    Parameters
    ----------
    updates
        ``(arrays, num_examples)`` per client.
    num_malicious
        ``f``, the number of Byzantine clients to tolerate.
    to_keep
        Updates averaged; ``None`` keeps ``n - f``. Clipped to [1, n], so a
        group that lost clients still aggregates.
    """
    n = len(updates)
    keep = n - num_malicious if to_keep is None else to_keep
    return _krum(updates, num_malicious, to_keep=max(1, min(keep, n)))


def _krum(updates: list[Update], num_malicious: int, to_keep: int) -> Arrays:
    from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median

    names, results = _to_flower(updates)
    first = updates[0][0]
    is_float = [np.issubdtype(first[name].dtype, np.floating) for name in names]
    floats = [i for i, flag in enumerate(is_float) if flag]
    others = [i for i, flag in enumerate(is_float) if not flag]
    merged: list[np.ndarray] = [np.empty(0)] * len(names)
    if floats:
        # Flower annotates the weights int (example counts); Krum never reads them.
        chosen = aggregate_krum(
            [([arrays[i] for i in floats], n) for arrays, n in results],  # type: ignore[misc]
            num_malicious,
            to_keep,
        )
        # Krum hands back the chosen client's own arrays: copy them, so the new
        # weights do not share memory with a reply.
        for i, value in zip(floats, chosen, strict=True):
            merged[i] = np.array(value)
    if others:
        counters = aggregate_median(
            [([arrays[i] for i in others], n) for arrays, n in results]  # type: ignore[misc]
        )
        for i, value in zip(others, counters, strict=True):
            merged[i] = value
    return _from_flower(names, merged, updates)


def _to_flower(updates: list[Update]) -> tuple[list[str], list[tuple[list[np.ndarray], float]]]:
    """Our updates as Flower's ``(list of arrays, num_examples)`` pairs.

    Every update is read in the first update's key order, so the i-th array of
    each list is the same tensor even when the clients' dicts are ordered
    differently.
    """
    if not updates:
        raise ValueError("cannot aggregate an empty group of updates")
    first = updates[0][0]
    for arrays, _ in updates[1:]:
        if arrays.keys() != first.keys():
            differ = sorted(set(arrays) ^ set(first))
            raise ValueError(f"updates hold different arrays: {', '.join(differ)}")
    names = list(first)
    return names, [([np.asarray(arrays[name]) for name in names], n) for arrays, n in updates]


def _from_flower(names: list[str], values: list[np.ndarray], updates: list[Update]) -> Arrays:
    """Flower's list of arrays back to a dict, each array in its input dtype."""
    first = updates[0][0]
    return {
        name: _restore_dtype(value, first[name].dtype)
        for name, value in zip(names, values, strict=True)
    }


AGGREGATORS: dict[str, AggregateFn] = {
    "fedavg": weighted_mean,
    "median": median,
    "trimmed-mean": trimmed_mean,
    "krum": krum,
    "multi-krum": multi_krum,
}
"""Aggregation functions by name; ``get_aggregator`` binds their parameters."""


def _beta(value: Any) -> float:
    try:
        beta = float(value)
    except (TypeError, ValueError):
        beta = float("nan")
    if isinstance(value, bool) or not 0.0 <= beta < 0.5:
        raise ValueError(f"must be a number in [0, 0.5), got {value!r}")
    return beta


def _count(value: Any, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be an integer >= {minimum}, got {value!r}") from None
    if count != float(value) or count < minimum:
        raise ValueError(f"must be an integer >= {minimum}, got {value!r}")
    return count


PARAMETERS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "trimmed-mean": {"beta": _beta},
    "krum": {"num_malicious": functools.partial(_count, minimum=0)},
    "multi-krum": {
        "num_malicious": functools.partial(_count, minimum=0),
        "to_keep": functools.partial(_count, minimum=1),
    },
}
"""Each aggregator's parameters and the conversion of their (string) values."""


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


def get_aggregator(name: str, **params: Any) -> AggregateFn:
    """A registered aggregation function by name, with its parameters bound.

    Parameters
    ----------
    name
        A key of ``AGGREGATORS``: fedavg, median, trimmed-mean, krum, multi-krum.
    **params
        The aggregator's parameters (``PARAMETERS``); values may be strings, as
        the config carries them, and names may use dashes (``num-malicious``).
        ``None`` keeps the default.

    Returns
    -------
    AggregateFn
        The registered function itself when no parameter is given, otherwise a
        ``functools.partial`` of it; both pickle, so they can run as Ray tasks.

    Raises
    ------
    ValueError
        For an unknown name, a parameter the aggregator does not take, or a
        value out of range.
    """
    if name not in AGGREGATORS:
        raise ValueError(f"unknown aggregator '{name}'; choose one of {', '.join(AGGREGATORS)}")
    accepted = PARAMETERS.get(name, {})
    bound: dict[str, Any] = {}
    for key, value in params.items():
        param = key.replace("-", "_")
        if param not in accepted:
            takes = ", ".join(accepted) or "no parameters"
            raise ValueError(f"aggregator '{name}' has no parameter '{key}'; it takes {takes}")
        if value is None:
            continue
        try:
            bound[param] = accepted[param](value)
        except ValueError as err:
            raise ValueError(f"aggregator '{name}': parameter '{key}' {err}") from None
    return functools.partial(AGGREGATORS[name], **bound) if bound else AGGREGATORS[name]


def load_aggregator(spec: str, **params: Any) -> AggregateFn:
    """A named aggregator, or a user's function imported from a dotted path.

    Parameters
    ----------
    spec
        A name for ``get_aggregator`` (no ``:`` and no ``.``), or the path of a
        module-level function: ``package.module:function`` or
        ``package.module.function``, looked up from the working directory first
        (:mod:`pwfl.extensions`).
    **params
        Parameters of a named aggregator; a user's function takes none.

    Returns
    -------
    AggregateFn
        The aggregation function.

    Raises
    ------
    ValueError
        With one line naming ``spec`` and the problem: the module is missing or
        fails to import, the attribute is missing, or it is not callable.
    """
    if not is_dotted(spec):
        return get_aggregator(spec, **params)
    if params:
        raise ValueError(f"aggregator '{spec}' is a user function; it takes no parameters")
    return load_callable(spec, "aggregator")


_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class Handle(Protocol[_T_co]):
    """A pending aggregation; ``result()`` blocks until it is done."""

    def result(self) -> _T_co: ...


class Executor(Protocol):
    """Runs aggregation functions (or a :class:`Timed` one), possibly concurrently."""

    name: str

    def submit(self, fn: Callable[[list[Update]], _T], updates: list[Update]) -> Handle[_T]: ...

    def shutdown(self) -> None: ...


class _Done(Generic[_T]):
    def __init__(self, value: _T):
        self._value = value

    def result(self) -> _T:
        return self._value


class SerialExecutor:
    """Aggregates in the calling thread, one group after another."""

    name = "serial"

    def __init__(self, workers: int = 1) -> None:
        """``workers`` is accepted like the other executors' and ignored: one at a time."""

    def submit(self, fn: Callable[[list[Update]], _T], updates: list[Update]) -> Handle[_T]:
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

    def submit(self, fn: Callable[[list[Update]], _T], updates: list[Update]) -> Handle[_T]:
        """Queue ``fn(updates)`` on the pool."""
        future: Future[_T] = self._pool.submit(fn, updates)
        return future

    def shutdown(self) -> None:
        """Stop the pool's threads."""
        self._pool.shutdown(wait=True)


class _RayHandle(Generic[_T]):
    def __init__(self, ref: Any):
        self._ref = ref

    def result(self) -> _T:
        import ray

        return ray.get(self._ref)


def _call(fn: Callable[[list[Update]], _T], updates: list[Update]) -> _T:
    return fn(updates)


def _warm_up(updates: list[Update]) -> Arrays:
    # Import in the worker, before any timed aggregation, what the Flower-based
    # aggregators import on first use.
    import flwr.server.strategy.aggregate  # noqa: F401
    import flwr.serverapp.strategy.strategy_utils  # noqa: F401

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
            # RAY_ADDRESS (a cluster the deployment runs on) or a session of its own;
            # never the leftover address of an earlier `ray start` on this machine.
            cluster = os.environ.get("RAY_ADDRESS")
            ray.init(
                address=cluster or "local",
                # Ray annotates it int, but takes a level's name too (its default is "info").
                logging_level="ERROR",  # type: ignore[arg-type]
                log_to_driver=False,
                include_dashboard=None if cluster else False,  # None: Ray's default
            )
        self._remote: Any = ray.remote(num_cpus=0)(_call)
        # Start the worker processes now (while the clients train), not when
        # the first round's groups are waiting to be aggregated.
        self._warm = [self._remote.remote(_warm_up, []) for _ in range(workers)]

    def submit(self, fn: Callable[[list[Update]], _T], updates: list[Update]) -> Handle[_T]:
        """Start ``fn(updates)`` as a Ray task."""
        return _RayHandle[_T](self._remote.remote(fn, updates))

    def shutdown(self) -> None:
        """The Ray session belongs to the runner; nothing to stop here."""


EXECUTORS: dict[str, Callable[[int], Executor]] = {
    "ray": RayExecutor,
    "threads": ThreadExecutor,
    "serial": SerialExecutor,
}
"""Executors by name (``strategy.executor``); each is built with the number of
aggregations it should run at once. Keyed by exactly ``pwfl.registry.EXECUTORS``."""


def make_executor(name: str, workers: int = 1) -> Executor:
    """Build an executor by name (a key of ``EXECUTORS``: ``ray``, ``threads``,
    ``serial``) for ``workers`` concurrent aggregations."""
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor '{name}'; choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](workers)

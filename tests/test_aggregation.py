"""Unit tests for pwfl.aggregation: weighted means, dtypes, executors and parity with Flower."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from pwfl.aggregation import (
    CHUNK,
    SerialExecutor,
    ThreadExecutor,
    get_aggregator,
    make_executor,
    mean_of_weight_sets,
    weighted_mean,
)

# ---------------------------------------------------------------- weighted_mean


def test_weighted_mean_two_clients_hand_computed():
    updates = [
        ({"w": np.array([1.0, 2.0])}, 1),
        ({"w": np.array([3.0, 4.0])}, 3),
    ]
    out = weighted_mean(updates)
    # (1*[1,2] + 3*[3,4]) / 4 = [2.5, 3.5]
    np.testing.assert_array_equal(out["w"], np.array([2.5, 3.5]))
    assert out["w"].dtype == np.float64


def test_weighted_mean_three_clients_several_arrays():
    updates = [
        ({"w": np.array([[2.0, 0.0]], dtype=np.float32), "b": np.array([8.0])}, 2),
        ({"w": np.array([[4.0, 4.0]], dtype=np.float32), "b": np.array([0.0])}, 1),
        ({"w": np.array([[0.0, 8.0]], dtype=np.float32), "b": np.array([4.0])}, 1),
    ]
    out = weighted_mean(updates)
    assert set(out) == {"w", "b"}
    # w: (2*[2,0] + [4,4] + [0,8]) / 4 = [2, 3];  b: (2*8 + 0 + 4) / 4 = 5
    np.testing.assert_allclose(out["w"], np.array([[2.0, 3.0]]), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["b"], np.array([5.0]), rtol=0, atol=1e-12)
    assert out["w"].dtype == np.float32
    assert out["w"].shape == (1, 2)
    assert out["b"].dtype == np.float64


def test_weighted_mean_single_update_is_identity():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = weighted_mean([({"w": w}, 17)])
    np.testing.assert_array_equal(out["w"], w)
    assert out["w"].dtype == np.float32


def test_weighted_mean_accepts_float_example_counts():
    out = weighted_mean([({"w": np.array([0.0])}, 0.5), ({"w": np.array([4.0])}, 1.5)])
    np.testing.assert_array_equal(out["w"], np.array([3.0]))


def test_weighted_mean_does_not_modify_inputs():
    a = np.array([1.0, 2.0], dtype=np.float32)
    b = np.array([3.0, 4.0], dtype=np.float32)
    weighted_mean([({"w": a}, 1), ({"w": b}, 3)])
    np.testing.assert_array_equal(a, [1.0, 2.0])
    np.testing.assert_array_equal(b, [3.0, 4.0])


def test_integer_arrays_are_rounded_and_cast_back():
    updates = [
        ({"count": np.array([1, 10], dtype=np.int64)}, 1),
        ({"count": np.array([4, 20], dtype=np.int64)}, 2),
    ]
    out = weighted_mean(updates)
    # (1*[1,10] + 2*[4,20]) / 3 = [3, 16.67] -> rounded to [3, 17]
    assert out["count"].dtype == np.int64
    np.testing.assert_array_equal(out["count"], np.array([3, 17]))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8])
def test_integer_dtype_preserved(dtype):
    updates = [({"c": np.array([2, 4], dtype=dtype)}, 1), ({"c": np.array([4, 8], dtype=dtype)}, 1)]
    out = weighted_mean(updates)
    assert out["c"].dtype == dtype
    np.testing.assert_array_equal(out["c"], np.array([3, 6], dtype=dtype))


def test_zero_dimensional_integer_counter():
    # Batch norm's num_batches_tracked is a 0-d int64 tensor.
    updates = [({"n": np.array(3, dtype=np.int64)}, 1), ({"n": np.array(6, dtype=np.int64)}, 2)]
    out = np.asarray(weighted_mean(updates)["n"])
    assert out.dtype == np.int64
    assert out.shape == ()
    assert int(out) == 5


def test_float_dtypes_preserved():
    updates = [
        ({"h": np.array([1.0], dtype=np.float16), "d": np.array([1.0], dtype=np.float64)}, 1),
        ({"h": np.array([3.0], dtype=np.float16), "d": np.array([3.0], dtype=np.float64)}, 1),
    ]
    out = weighted_mean(updates)
    assert out["h"].dtype == np.float16
    assert out["d"].dtype == np.float64
    np.testing.assert_array_equal(out["h"], np.array([2.0], dtype=np.float16))


def test_weighted_mean_empty_group_raises():
    with pytest.raises(ValueError, match="empty"):
        weighted_mean([])


def test_weighted_mean_zero_examples_raises():
    with pytest.raises(ValueError, match="no examples"):
        weighted_mean([({"w": np.array([1.0])}, 0), ({"w": np.array([2.0])}, 0)])


# ---------------------------------------------------------------- mean_of_weight_sets


def test_mean_of_weight_sets_ignores_sizes():
    sets = [
        {"w": np.array([1.0, 2.0], dtype=np.float32), "n": np.array([2], dtype=np.int64)},
        {"w": np.array([3.0, 6.0], dtype=np.float32), "n": np.array([4], dtype=np.int64)},
    ]
    out = mean_of_weight_sets(sets)
    np.testing.assert_array_equal(out["w"], np.array([2.0, 4.0], dtype=np.float32))
    np.testing.assert_array_equal(out["n"], np.array([3]))
    assert out["w"].dtype == np.float32
    assert out["n"].dtype == np.int64


def test_mean_of_three_weight_sets():
    sets = [{"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 4.0])}, {"w": np.array([5.0, 9.0])}]
    out = mean_of_weight_sets(sets)
    np.testing.assert_allclose(out["w"], np.array([3.0, 5.0]), rtol=1e-15)


def test_mean_of_weight_sets_empty_raises():
    with pytest.raises(ValueError):
        mean_of_weight_sets([])


# ---------------------------------------------------------------- registry and executors


def test_get_aggregator():
    assert get_aggregator("fedavg") is weighted_mean
    with pytest.raises(ValueError, match="unknown aggregator 'nope'"):
        get_aggregator("nope")


def test_make_executor_by_name():
    assert isinstance(make_executor("serial"), SerialExecutor)
    threads = make_executor("threads")
    try:
        assert isinstance(threads, ThreadExecutor)
        assert threads.name == "threads"
    finally:
        threads.shutdown()
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        make_executor("dask")


def _random_groups(seed: int, k: int = 4, clients: int = 3):
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(k):
        group = []
        for _ in range(clients):
            arrays = {
                "conv.weight": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
                "fc.bias": rng.standard_normal(10).astype(np.float32),
                "bn.num_batches_tracked": np.array(rng.integers(0, 100), dtype=np.int64),
            }
            group.append((arrays, int(rng.integers(1, 500))))
        groups.append(group)
    return groups


def _assert_same_arrays(a, b):
    assert list(a) == list(b)
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), name


@pytest.mark.parametrize("executor_cls", [SerialExecutor, ThreadExecutor])
def test_executor_matches_direct_call(executor_cls):
    groups = _random_groups(seed=11)
    expected = [weighted_mean(g) for g in groups]
    executor = executor_cls()
    try:
        handles = [executor.submit(weighted_mean, g) for g in groups]
        results = [h.result() for h in handles]
    finally:
        executor.shutdown()
    assert len(results) == len(expected)
    for got, want in zip(results, expected, strict=True):
        _assert_same_arrays(got, want)


def test_thread_executor_propagates_errors():
    executor = ThreadExecutor(max_workers=2)
    try:
        handle = executor.submit(weighted_mean, [])
        with pytest.raises(ValueError, match="empty"):
            handle.result()
    finally:
        executor.shutdown()


def test_serial_executor_runs_custom_function():
    executor = SerialExecutor()
    handle = executor.submit(lambda updates: {"n": np.array([len(updates)])}, [({}, 1)] * 3)
    np.testing.assert_array_equal(handle.result()["n"], [3])


# ---------------------------------------------------------------- parity with Flower


def _flower_records(updates):
    return [
        RecordDict(
            {
                "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                "metrics": MetricRecord({"num-examples": n}),
            }
        )
        for arrays, n in updates
    ]


@pytest.mark.parametrize("seed", range(8))
def test_weighted_mean_bitwise_equals_flower(seed):
    rng = np.random.default_rng(seed)
    num_clients = int(rng.integers(2, 7))
    shapes = {"conv.weight": (16, 1, 5, 5), "conv.bias": (16,), "fc.weight": (10, 64)}
    updates = []
    for _ in range(num_clients):
        arrays = {
            name: (rng.standard_normal(shape) * rng.uniform(0.01, 10)).astype(np.float32)
            for name, shape in shapes.items()
        }
        updates.append((arrays, int(rng.integers(1, 1000))))

    ours = weighted_mean(updates)
    theirs = aggregate_arrayrecords(_flower_records(updates), "num-examples")

    assert list(ours) == list(theirs.keys())
    for name, value in ours.items():
        flower = theirs[name].numpy()
        assert value.dtype == np.float32
        assert flower.dtype == np.float32
        assert value.shape == flower.shape
        assert np.array_equal(value, flower), f"{name} differs from Flower's FedAvg"


def test_weighted_mean_bitwise_equals_flower_across_chunks():
    """Arrays longer than one slice of the chunked sum (and not a multiple of it)."""
    rng = np.random.default_rng(7)
    size = 2 * CHUNK + 13
    updates = [
        ({"w": rng.standard_normal((size, 1)).astype(np.float32)}, int(rng.integers(1, 99)))
        for _ in range(4)
    ]
    ours = weighted_mean(updates)
    theirs = aggregate_arrayrecords(_flower_records(updates), "num-examples")
    assert ours["w"].shape == (size, 1)
    assert np.array_equal(ours["w"], theirs["w"].numpy())


def test_weighted_mean_bitwise_equals_flower_float64():
    rng = np.random.default_rng(100)
    updates = [({"w": rng.standard_normal((7, 3))}, int(rng.integers(1, 50))) for _ in range(5)]
    ours = weighted_mean(updates)
    theirs = aggregate_arrayrecords(_flower_records(updates), "num-examples")
    assert np.array_equal(ours["w"], theirs["w"].numpy())

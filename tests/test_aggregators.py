"""Unit tests for the aggregator registry: robust rules by hand, parameters, pickling, loading."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from pwfl.aggregation import (
    AGGREGATORS,
    SerialExecutor,
    ThreadExecutor,
    get_aggregator,
    krum,
    load_aggregator,
    median,
    multi_krum,
    trimmed_mean,
    weighted_mean,
)

NAMES = ["fedavg", "median", "trimmed-mean", "krum", "multi-krum"]


def my_mean(updates):
    """A user's aggregator, loaded by its dotted path in the tests below."""
    return {name: np.mean([a[name] for a, _ in updates], axis=0) for name in updates[0][0]}


NOT_A_FUNCTION = 42


def _updates(points, counts=None, counters=None):
    """One update per 2-d point: ``{"w": point}`` (plus an int64 counter if given)."""
    counts = counts or [1] * len(points)
    updates = []
    for i, (point, count) in enumerate(zip(points, counts, strict=True)):
        arrays = {"w": np.array(point, dtype=np.float64)}
        if counters is not None:
            arrays["n"] = np.array(counters[i], dtype=np.int64)
        updates.append((arrays, count))
    return updates


# Four clients around the origin and one far away. With f = 1 Krum scores each
# point by its n - f - 2 = 2 nearest neighbours (squared distances):
#   (0,0): 1 + 1 = 2;  (1,0): 1 + 4 = 5;  (-1,0): 1 + 4 = 5;  (0,2): 4 + 5 = 9;  (50,50): huge.
CLUSTER = [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 2.0), (50.0, 50.0)]


# ---------------------------------------------------------------- hand-computed cases


def test_median_is_coordinate_wise():
    updates = [
        ({"w": np.array([1.0, 5.0, 2.0])}, 10),
        ({"w": np.array([3.0, 1.0, 9.0])}, 1),
        ({"w": np.array([2.0, 2.0, 2.0])}, 1),
    ]
    # Each coordinate on its own: median(1,3,2)=2, median(5,1,2)=2, median(2,9,2)=2;
    # the 10 examples of the first client change nothing.
    np.testing.assert_array_equal(median(updates)["w"], [2.0, 2.0, 2.0])


def test_median_of_an_even_group_averages_the_middle_pair():
    updates = _updates([(1.0, 0.0), (2.0, 0.0), (4.0, 0.0), (100.0, 0.0)])
    np.testing.assert_array_equal(median(updates)["w"], [3.0, 0.0])


def test_trimmed_mean_cuts_one_value_at_each_end_of_five():
    updates = _updates([(1.0, 100.0), (2.0, 4.0), (3.0, 3.0), (4.0, 2.0), (100.0, -50.0)])
    # beta = 0.2: floor(0.2 * 5) = 1 cut per end -> mean(2, 3, 4) = 3 and mean(2, 3, 4) = 3.
    np.testing.assert_allclose(trimmed_mean(updates)["w"], [3.0, 3.0])
    np.testing.assert_allclose(get_aggregator("trimmed-mean", beta="0.2")(updates)["w"], [3.0, 3.0])
    # beta = 0 cuts nothing: the plain, unweighted mean.
    np.testing.assert_allclose(trimmed_mean(updates, beta=0.0)["w"], [22.0, 11.8])


def test_trimmed_mean_of_four_with_default_beta_cuts_nothing():
    # floor(0.2 * 4) = 0: Flower's rounding keeps every value of a small group.
    updates = _updates([(1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (10.0, 0.0)])
    np.testing.assert_allclose(trimmed_mean(updates)["w"], [4.0, 0.0])
    np.testing.assert_allclose(trimmed_mean(updates, beta=0.25)["w"], [2.5, 0.0])


def test_krum_picks_the_update_closest_to_its_neighbours():
    updates = _updates(CLUSTER)
    np.testing.assert_array_equal(krum(updates, num_malicious=1)["w"], [0.0, 0.0])
    np.testing.assert_array_equal(get_aggregator("krum")(updates)["w"], [0.0, 0.0])


def test_krum_returns_a_copy_not_the_clients_array():
    updates = _updates(CLUSTER)
    out = krum(updates, num_malicious=1)["w"]
    assert not np.shares_memory(out, updates[0][0]["w"])


def test_multi_krum_averages_the_kept_updates_by_examples():
    # Best three scores: (0,0), (1,0), (-1,0); Flower weights them by examples 1, 1, 2:
    # x = (0 + 1 - 2) / 4 = -0.25.
    updates = _updates(CLUSTER, counts=[1, 1, 2, 1, 1])
    out = get_aggregator("multi-krum", num_malicious="1", to_keep="3")(updates)
    np.testing.assert_allclose(out["w"], [-0.25, 0.0])
    # to_keep defaults to n - f = 4: add (0,2) -> x = -1/5, y = 2/5.
    np.testing.assert_allclose(multi_krum(updates, num_malicious=1)["w"], [-0.2, 0.4])


def test_multi_krum_keeping_more_than_the_group_keeps_everyone():
    updates = _updates(CLUSTER[:3])
    out = multi_krum(updates, to_keep=10)
    np.testing.assert_allclose(out["w"], weighted_mean(updates)["w"])


def test_krum_distances_ignore_integer_counters():
    # The central client trained ten times as many batches. Were its counter part
    # of the distances, (1000 - 100)^2 would make it the outlier.
    updates = _updates(CLUSTER, counters=[1000, 100, 100, 100, 100])
    out = krum(updates, num_malicious=1)
    np.testing.assert_array_equal(out["w"], [0.0, 0.0])
    assert out["n"].dtype == np.int64
    assert int(out["n"]) == 100  # integer arrays: the coordinate-wise median


@pytest.mark.parametrize("name", NAMES)
def test_integer_and_float32_arrays_keep_their_dtype(name):
    rng = np.random.default_rng(3)
    updates = [
        (
            {
                "conv.weight": rng.standard_normal((2, 3)).astype(np.float32),
                "bn.num_batches_tracked": np.array(rng.integers(0, 100), dtype=np.int64),
                "ids": rng.integers(0, 10, size=4).astype(np.int32),
            },
            int(rng.integers(1, 50)),
        )
        for _ in range(5)
    ]
    out = get_aggregator(name)(updates)
    assert list(out) == ["conv.weight", "bn.num_batches_tracked", "ids"]
    assert out["conv.weight"].dtype == np.float32
    assert out["bn.num_batches_tracked"].dtype == np.int64
    assert out["bn.num_batches_tracked"].shape == ()
    assert out["ids"].dtype == np.int32
    assert out["ids"].shape == (4,)


@pytest.mark.parametrize("name", NAMES)
def test_clients_may_order_their_arrays_differently(name):
    a = {"x": np.array([1.0, 2.0]), "y": np.array([3.0])}
    b = {"y": np.array([5.0]), "x": np.array([1.0, 4.0])}
    c = {"x": np.array([1.0, 3.0]), "y": np.array([4.0])}
    out = get_aggregator(name)([(a, 1), (b, 1), (c, 1)])
    assert list(out) == ["x", "y"]
    assert out["x"][0] == 1.0  # every client holds x[0] = 1: the arrays lined up by name


@pytest.mark.parametrize("name", ["median", "trimmed-mean", "krum", "multi-krum"])
def test_bad_groups_raise(name):
    fn = get_aggregator(name)
    with pytest.raises(ValueError, match="empty"):
        fn([])
    with pytest.raises(ValueError, match="different arrays: y"):
        fn([({"x": np.zeros(1)}, 1), ({"x": np.zeros(1), "y": np.zeros(1)}, 1)])


# ---------------------------------------------------------------- registry and parameters


def test_registry_names():
    assert list(AGGREGATORS) == NAMES
    assert get_aggregator("fedavg") is weighted_mean


def test_unknown_aggregator_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        get_aggregator("geomed")
    message = str(info.value)
    assert "unknown aggregator 'geomed'" in message
    assert "\n" not in message
    for name in NAMES:
        assert name in message


@pytest.mark.parametrize(
    ("name", "params", "problem"),
    [
        ("median", {"beta": "0.1"}, "no parameter 'beta'; it takes no parameters"),
        ("krum", {"to_keep": 2}, "no parameter 'to_keep'; it takes num_malicious"),
        ("trimmed-mean", {"beta": "0.5"}, "must be a number in \\[0, 0.5\\)"),
        ("trimmed-mean", {"beta": "a lot"}, "must be a number"),
        ("krum", {"num_malicious": "-1"}, "must be an integer >= 0"),
        ("krum", {"num_malicious": "1.5"}, "must be an integer >= 0"),
        ("multi-krum", {"to_keep": 0}, "must be an integer >= 1"),
    ],
)
def test_bad_parameters_raise(name, params, problem):
    with pytest.raises(ValueError, match=problem):
        get_aggregator(name, **params)


def test_parameters_from_config_strings_with_dashes():
    fn = get_aggregator("multi-krum", **{"num-malicious": "1", "to-keep": " 3 "})
    assert fn.keywords == {"num_malicious": 1, "to_keep": 3}
    assert get_aggregator("trimmed-mean", beta=0.1).keywords == {"beta": 0.1}
    assert get_aggregator("multi-krum", to_keep=None) is multi_krum


# ---------------------------------------------------------------- pickling and executors


@pytest.mark.parametrize(
    "fn",
    [get_aggregator(name) for name in NAMES]
    + [
        get_aggregator("trimmed-mean", beta="0.4"),
        get_aggregator("krum", num_malicious="1"),
        get_aggregator("multi-krum", num_malicious=1, to_keep=2),
        load_aggregator("tests.test_aggregators:my_mean"),
    ],
)
def test_aggregators_pickle(fn):
    updates = _updates(CLUSTER, counts=[3, 1, 2, 5, 1], counters=[1, 2, 3, 4, 5])
    clone = pickle.loads(pickle.dumps(fn))
    want, got = fn(updates), clone(updates)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype
        assert np.array_equal(got[name], want[name])


@pytest.mark.parametrize("name", NAMES)
def test_serial_and_thread_executors_agree(name):
    rng = np.random.default_rng(7)
    groups = [
        [
            (
                {
                    "w": rng.standard_normal((4, 3)).astype(np.float32),
                    "n": np.array(rng.integers(0, 100), dtype=np.int64),
                },
                int(rng.integers(1, 100)),
            )
            for _ in range(5)
        ]
        for _ in range(4)
    ]
    fn = get_aggregator(name)
    serial, threads = SerialExecutor(), ThreadExecutor(4)
    try:
        by_serial = [h.result() for h in [serial.submit(fn, g) for g in groups]]
        by_threads = [h.result() for h in [threads.submit(fn, g) for g in groups]]
    finally:
        threads.shutdown()
    for a, b in zip(by_serial, by_threads, strict=True):
        assert list(a) == list(b)
        for key in a:
            assert a[key].dtype == b[key].dtype
            assert np.array_equal(a[key], b[key])


def test_importing_aggregation_does_not_import_flower():
    code = "import sys, pwfl.aggregation; print('flwr' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# ---------------------------------------------------------------- load_aggregator


@pytest.mark.parametrize(
    "spec", ["tests.test_aggregators:my_mean", "tests.test_aggregators.my_mean"]
)
def test_load_aggregator_imports_a_user_function(spec):
    fn = load_aggregator(spec)
    assert fn is my_mean
    out = fn(_updates([(1.0, 2.0), (3.0, 6.0)]))
    np.testing.assert_array_equal(out["w"], [2.0, 4.0])


def test_load_aggregator_looks_names_up_in_the_registry():
    assert load_aggregator("fedavg") is weighted_mean
    assert load_aggregator("trimmed-mean", beta="0.3").keywords == {"beta": 0.3}
    assert load_aggregator("pwfl.aggregation:median") is median
    with pytest.raises(ValueError, match="unknown aggregator 'bulyan'"):
        load_aggregator("bulyan")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("nope.module:fn", "no module named 'nope'"),
        ("nope.module.fn", "no module named 'nope'"),
        ("pwfl.aggregation:does_not_exist", "has no attribute 'does_not_exist'"),
        ("tests.test_aggregators:NOT_A_FUNCTION", "is not callable \\(int\\)"),
        (":my_mean", "expected 'package.module:function'"),
        ("tests.test_aggregators:", "expected 'package.module:function'"),
    ],
)
def test_load_aggregator_bad_paths_raise_one_line(spec, problem):
    with pytest.raises(ValueError, match=problem) as info:
        load_aggregator(spec)
    message = str(info.value)
    assert f"'{spec}'" in message
    assert "\n" not in message


def test_load_aggregator_reports_a_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_agg.py").write_text("raise RuntimeError('bad\\nsetup')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="raised RuntimeError: bad setup") as info:
        load_aggregator("broken_agg:fn")
    assert "\n" not in str(info.value)


def test_user_functions_take_no_parameters():
    with pytest.raises(ValueError, match="takes no parameters"):
        load_aggregator("tests.test_aggregators:my_mean", beta="0.1")

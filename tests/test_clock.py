"""Unit tests for pwfl.clock: simulated round lengths, server busy time and idle time."""

from __future__ import annotations

import pytest

from pwfl.clock import (
    GroupTiming,
    busy_time,
    concurrent_round,
    group_train_time,
    idle_time,
    round_length,
    sequential_round,
)


def test_group_timing_end():
    assert GroupTiming(2.0, 3.0, 0.5).end_s == 5.5


def test_group_train_time_is_slowest_client():
    assert group_train_time([1.0, 4.0, 2.5]) == 4.0
    assert group_train_time([0.25]) == 0.25
    assert group_train_time([]) == 0.0


def test_concurrent_round_two_groups():
    timings = concurrent_round([3.0, 5.0], [1.0, 1.0])
    assert timings == [GroupTiming(0.0, 3.0, 1.0), GroupTiming(0.0, 5.0, 1.0)]
    # max(3 + 1, 5 + 1) = 6
    assert round_length(timings) == 6.0
    # Aggregations [3, 4] and [5, 6] do not overlap: busy 2, idle 4.
    assert busy_time(timings) == 2.0
    assert idle_time(timings) == 4.0


def test_sequential_round_two_groups():
    timings = sequential_round([3.0, 5.0], [1.0, 1.0])
    # Group 2 is sent when group 1 is aggregated, at t = 3 + 1 = 4.
    assert timings == [GroupTiming(0.0, 3.0, 1.0), GroupTiming(4.0, 5.0, 1.0)]
    assert [g.end_s for g in timings] == [4.0, 10.0]
    # 3 + 1 + 5 + 1 = 10
    assert round_length(timings) == 10.0
    # Aggregations [3, 4] and [9, 10]: busy 2, idle 8.
    assert busy_time(timings) == 2.0
    assert idle_time(timings) == 8.0


def test_sequential_round_three_groups():
    timings = sequential_round([2.0, 1.0, 4.0], [0.5, 0.25, 1.0])
    assert [g.start_s for g in timings] == [0.0, 2.5, 3.75]
    assert round_length(timings) == 8.75
    assert busy_time(timings) == 1.75
    assert idle_time(timings) == 7.0


def test_single_group_is_fedavg():
    timings = concurrent_round([4.0], [0.5])
    assert round_length(timings) == 4.5
    assert busy_time(timings) == 0.5
    assert idle_time(timings) == 4.0
    assert round_length(sequential_round([4.0], [0.5])) == 4.5


def test_busy_time_overlapping_intervals():
    # Aggregations [3, 4] and [3.5, 4.5] overlap: union [3, 4.5] = 1.5.
    timings = concurrent_round([3.0, 3.5], [1.0, 1.0])
    assert round_length(timings) == 4.5
    assert busy_time(timings) == 1.5
    assert idle_time(timings) == 3.0


def test_busy_time_nested_interval():
    # [2, 5] contains [2.5, 3]: the union is 3, not 3.5.
    timings = concurrent_round([2.0, 2.5], [3.0, 0.5])
    assert busy_time(timings) == 3.0
    assert round_length(timings) == 5.0
    assert idle_time(timings) == 2.0


def test_busy_time_touching_intervals():
    # [3, 4] and [4, 5] touch: union length 2.
    timings = concurrent_round([3.0, 4.0], [1.0, 1.0])
    assert busy_time(timings) == 2.0
    assert idle_time(timings) == 3.0


def test_busy_time_unsorted_mixed_intervals():
    # Intervals (5, 6), (1, 3), (2, 2.5): union [1, 3] + [5, 6] = 3.
    timings = concurrent_round([5.0, 1.0, 2.0], [1.0, 2.0, 0.5])
    assert busy_time(timings) == 3.0
    assert round_length(timings) == 6.0
    assert idle_time(timings) == 3.0


def test_busy_time_chain_of_overlaps():
    # (1, 4), (2, 6), (5, 7) chain into [1, 7] = 6, then (8, 9) = 1.
    timings = [
        GroupTiming(0.0, 1.0, 3.0),
        GroupTiming(0.0, 2.0, 4.0),
        GroupTiming(1.0, 4.0, 2.0),
        GroupTiming(0.0, 8.0, 1.0),
    ]
    assert busy_time(timings) == 7.0
    assert round_length(timings) == 9.0
    assert idle_time(timings) == 2.0


def test_concurrent_never_longer_than_sequential():
    train, agg = [3.0, 5.0, 2.0], [1.0, 0.5, 2.0]
    conc = round_length(concurrent_round(train, agg))
    seq = round_length(sequential_round(train, agg))
    assert conc == 5.5  # max(3 + 1, 5 + 0.5, 2 + 2)
    assert seq == 13.5  # 4 + 5.5 + 4
    assert conc <= seq


def test_zero_aggregation_time():
    timings = concurrent_round([1.0, 2.0], [0.0, 0.0])
    assert busy_time(timings) == 0.0
    assert idle_time(timings) == 2.0


def test_empty_round():
    assert concurrent_round([], []) == []
    assert sequential_round([], []) == []
    assert round_length([]) == 0.0
    assert busy_time([]) == 0.0
    assert idle_time([]) == 0.0


@pytest.mark.parametrize("fn", [concurrent_round, sequential_round])
def test_mismatched_lengths_raise(fn):
    with pytest.raises(ValueError):
        fn([1.0, 2.0], [1.0])

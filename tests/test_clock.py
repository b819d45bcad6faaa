"""Unit tests for pwfl.clock: the server's busy time (union of aggregation intervals)."""

from __future__ import annotations

import pytest

from pwfl.clock import busy_time


@pytest.mark.parametrize(
    ("intervals", "busy"),
    [
        ([(3.0, 4.0), (5.0, 6.0)], 2.0),  # apart
        ([(3.0, 4.0), (3.5, 4.5)], 1.5),  # overlapping: counted once
        ([(2.0, 5.0), (2.5, 3.0)], 3.0),  # nested
        ([(3.0, 4.0), (4.0, 5.0)], 2.0),  # touching
        ([(6.0, 7.0), (1.0, 3.0), (2.0, 2.5)], 3.0),  # unsorted and mixed
        ([(1.0, 4.0), (2.0, 6.0), (5.0, 7.0), (8.0, 9.0)], 7.0),  # a chain of overlaps
        ([(1.0, 1.0), (2.0, 2.0)], 0.0),  # zero-length aggregations
        ([], 0.0),
    ],
)
def test_busy_time_is_the_length_of_the_union(intervals, busy):
    assert busy_time(intervals) == pytest.approx(busy)
    assert busy_time(list(reversed(intervals))) == pytest.approx(busy)


def test_busy_time_is_clipped_to_the_window():
    intervals = [(0.0, 2.0), (3.0, 5.0), (6.0, 9.0)]
    assert busy_time(intervals, 1.0, 7.0) == pytest.approx(1.0 + 2.0 + 1.0)
    assert busy_time(intervals, 2.0, 3.0) == 0.0
    assert busy_time(intervals, 10.0, 12.0) == 0.0

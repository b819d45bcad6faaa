"""The simulated clock: how long a round would take if every client were its own device.

This machine runs all clients on a few shared cores, so its wall clock cannot
show what PWFL does on real, separate devices. The simulated clock models it:

* a client's time is the CPU time of its own training thread (``train_time_s``);
* a group's time is the time of its slowest client (the server waits for all);
* aggregating a group takes the host time the server measured for it, and
  starts when the group's last reply is in;
* a ``pwfl`` round lasts until its last group is aggregated: ``max_k(g_k + a_k)``,
  since the K groups train at the same time;
* a ``pwfl-sequential`` round lasts ``sum_k(g_k + a_k)``: group k+1 is sent
  only after group k is aggregated;
* a ``fedavg`` round is one group: its slowest client plus the aggregation.

The server is *busy* while it aggregates and *idle* otherwise; the idle time of
a round is its length minus the union of its aggregation intervals.
Network transfer and device heterogeneity are not modelled yet (zero).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupTiming:
    """One group of a round on the simulated clock (seconds from the round's start)."""

    start_s: float
    """When the group's weights were sent."""
    train_s: float
    """Slowest client of the group."""
    aggregate_s: float
    """Server time to aggregate the group."""

    @property
    def end_s(self) -> float:
        """When the group's new weights were ready."""
        return self.start_s + self.train_s + self.aggregate_s


def group_train_time(client_times: Sequence[float]) -> float:
    """A group waits for its slowest client; an empty group takes no time."""
    return max(client_times, default=0.0)


def concurrent_round(train_s: Sequence[float], aggregate_s: Sequence[float]) -> list[GroupTiming]:
    """K groups sent together at time 0 (``pwfl`` and ``fedavg`` with K=1)."""
    return [GroupTiming(0.0, t, a) for t, a in zip(train_s, aggregate_s, strict=True)]


def sequential_round(train_s: Sequence[float], aggregate_s: Sequence[float]) -> list[GroupTiming]:
    """K groups, each sent when the previous one is aggregated (``pwfl-sequential``)."""
    timings, start = [], 0.0
    for t, a in zip(train_s, aggregate_s, strict=True):
        timings.append(GroupTiming(start, t, a))
        start += t + a
    return timings


def round_length(timings: Sequence[GroupTiming]) -> float:
    """A round ends when its last group's aggregation ends."""
    return max((g.end_s for g in timings), default=0.0)


def busy_time(timings: Sequence[GroupTiming]) -> float:
    """Length of the union of the server's aggregation intervals."""
    intervals = sorted((g.start_s + g.train_s, g.end_s) for g in timings)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in intervals:
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def idle_time(timings: Sequence[GroupTiming]) -> float:
    """Time in the round when the server waited for replies instead of aggregating."""
    return round_length(timings) - busy_time(timings)

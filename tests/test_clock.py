"""Unit tests for pwfl.clock: shared links, the server's cores, events, and busy time."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwfl.clock import (
    Cores,
    Link,
    Simulation,
    aggregation_bytes,
    aggregation_seconds,
    busy_time,
    compute_seconds,
    idle_share,
    idle_time,
    transfer_seconds,
)


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


def test_idle_time_is_the_window_less_the_union_of_aggregations():
    # [1, 7] holds 1 + 2 + 1 busy seconds (overlaps counted once), so 2 idle ones.
    intervals = [(0.0, 2.0), (3.0, 4.5), (4.0, 5.0), (6.0, 9.0)]
    assert idle_time(intervals, 1.0, 7.0) == pytest.approx(2.0)
    assert idle_share(intervals, 1.0, 7.0) == pytest.approx(2.0 / 6.0)
    assert idle_time([], 2.0, 5.0) == 3.0 and idle_share([], 2.0, 5.0) == 1.0
    assert idle_time([(0.0, 10.0)], 2.0, 5.0) == 0.0 and idle_share([(0.0, 10.0)], 2.0, 5.0) == 0.0
    assert math.isnan(idle_share(intervals, 3.0, 3.0))  # an empty window has no share


# --- the shared link ----------------------------------------------------------------


def test_link_shares_are_max_min_fair_with_each_flows_own_cap():
    link = Link(mbps=10.0)  # 10 Mbit/s
    link.add("slow", 1e6, cap_bps=2e6)
    link.add("a", 1e6, cap_bps=10e6)
    link.add("b", 1e6, cap_bps=10e6)
    rates = {key: flow.rate for key, flow in link.flows.items()}
    # The capped flow gets its 2; the other two split the remaining 8.
    assert rates == pytest.approx({"slow": 2e6, "a": 4e6, "b": 4e6})


def test_an_unlimited_link_gives_every_flow_its_cap():
    link = Link(mbps=math.inf)
    link.add("a", 1e6, cap_bps=3e6)
    link.add("b", 1e6, cap_bps=5e6)
    assert {k: f.rate for k, f in link.flows.items()} == {"a": 3e6, "b": 5e6}


def _water_filled(capacity: float, caps: dict[str, float]) -> dict[str, float]:
    """Max-min fair rates computed afresh: the lowest caps first, each at most an equal
    share of what the earlier ones left."""
    rates, left, waiting = {}, capacity, len(caps)
    for key in sorted(caps, key=lambda k: (caps[k], k)):
        rates[key] = min(caps[key], left / waiting)
        left -= rates[key]
        waiting -= 1
    return rates


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1.0, 20.0, 1000.0, math.inf]),
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 30), st.sampled_from([0.5e6, 2e6, 20e6, 50e6])),
        max_size=120,
    ),
)
def test_link_rates_are_those_of_water_filling_afresh_bit_for_bit(mbps, steps):
    # The link skips the water-filling while every flow fits at its cap: the rates
    # must be the same floats as computing it afresh after every start and end.
    link = Link(mbps=mbps)
    for start, key, cap in steps:
        if start and str(key) not in link.flows:
            link.add(str(key), 1e6, cap_bps=cap)
        else:
            link.remove(str(key))
        caps = {k: f.cap for k, f in link.flows.items()}
        assert {k: f.rate for k, f in link.flows.items()} == _water_filled(link.capacity, caps)


class _FloatLink:
    """The link as one float per transfer and a loop over them, rates worked out afresh
    at every start and end: what :class:`Link` computes with arrays and later."""

    def __init__(self, mbps: float):
        self.capacity, self.time = mbps * 1e6, 0.0
        self.flows: dict[str, list[float]] = {}  # key: [bits left, cap, rate]

    def advance(self, time: float) -> None:
        if time - self.time > 0:
            for flow in self.flows.values():
                moved = math.inf if math.isinf(flow[2]) else flow[2] * (time - self.time)
                flow[0] = max(0.0, flow[0] - moved)
        self.time = max(self.time, time)

    def change(self, key: str, flow: list[float] | None) -> None:
        self.flows.pop(key, None)
        if flow is not None:
            self.flows[key] = flow
        caps = {k: f[1] for k, f in self.flows.items()}
        for k, rate in _water_filled(self.capacity, caps).items():
            self.flows[k][2] = rate

    def next_done(self) -> tuple[float, str] | None:
        ends = [
            (self.time if f[0] <= 0 or math.isinf(f[2]) else self.time + f[0] / f[2], k)
            for k, f in self.flows.items()
            if f[0] <= 0 or f[2] > 0
        ]
        return min(ends, default=None)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([1.0, 20.0, 1000.0, math.inf]),
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "advance"]),
            st.integers(0, 40),
            st.sampled_from([0.5e6, 2e6, 20e6, 50e6, math.inf]),
            st.floats(0.0, 2.0),
            st.booleans(),
        ),
        max_size=150,
    ),
)
def test_link_moves_and_ends_transfers_as_one_float_each_bit_for_bit(mbps, steps):
    # The link keeps its transfers in arrays and works their rates out only when it
    # next needs them; every time and every bit left must be the same floats as
    # those of a loop over one float per transfer, rates worked out at every change.
    # The link is looked at after some steps only, so that starts, ends and moves
    # also follow one another while its rates are not worked out yet.
    link, floats = Link(mbps=mbps), _FloatLink(mbps)
    for i, (action, key, cap, seconds, look) in enumerate(steps):
        name = f"f{key}"
        if action == "add" and not (math.isinf(cap) and math.isinf(mbps)):
            link.add((name,), 1e4 * (key + 1), cap_bps=cap)
            floats.change(name, [1e4 * (key + 1), cap, 0.0])
        elif action == "remove":
            link.remove((name,))
            floats.change(name, None)
        else:
            done = floats.next_done()
            at = floats.time + seconds if done is None else min(done[0], floats.time + seconds)
            link.advance(at)
            floats.advance(at)
        if not (look or i == len(steps) - 1):
            continue
        done = floats.next_done()
        assert link.next_done() == (None if done is None else (done[0], (done[1],)))
        assert {k[0]: [f.remaining, f.cap, f.rate] for k, f in link.flows.items()} == floats.flows
        assert list(link.flows) == [(k,) for k in floats.flows]  # in the order they started


def test_a_transfer_whose_key_cannot_be_ordered_leaves_the_link_as_it_was():
    link = Link(mbps=10.0)
    link.add((1,), 1e6, cap_bps=2e6)
    with pytest.raises(TypeError):
        link.add(("a",), 1e6, cap_bps=2e6)  # keys are ordered to break ties
    assert list(link.flows) == [(1,)] and link.next_done() == (0.5, (1,))


def test_transfers_end_when_their_bits_are_moved_and_the_others_speed_up():
    """A saturated link: 1 Mbit and 2 Mbit over 1 Mbit/s, both capped at 10."""
    sim = Simulation(up_mbps=1.0, down_mbps=math.inf, cores=1)
    sim.transfer("up", "small", 125_000, 10.0, "small done")  # 1 Mbit
    sim.transfer("up", "big", 250_000, 10.0, "big done")  # 2 Mbit
    # Each gets 0.5 Mbit/s: the small one ends at 2 s, when the big one has 1 Mbit
    # left; alone at 1 Mbit/s it ends 1 s later.
    assert sim.pop() == (pytest.approx(2.0), "small done")
    assert sim.pop() == (pytest.approx(3.0), "big done")
    assert not sim.busy()


def test_a_transfer_started_later_slows_the_first_from_then_on():
    sim = Simulation(up_mbps=1.0, down_mbps=math.inf, cores=1)
    sim.transfer("up", "first", 250_000, 10.0, "first done")  # 2 Mbit alone: 2 s
    sim.at(1.0, "second starts")
    assert sim.pop() == (1.0, "second starts")
    sim.transfer("up", "second", 125_000, 10.0, "second done")  # 1 Mbit
    # From t=1 both move at 0.5 Mbit/s: first has 1 Mbit left, second 1 Mbit: both end
    # at t=3; the tie goes in key order.
    assert sim.pop() == (pytest.approx(3.0), "first done")
    assert sim.pop() == (pytest.approx(3.0), "second done")


def test_cancelled_transfers_and_dropped_events_leave_no_trace():
    sim = Simulation(up_mbps=1.0, down_mbps=1.0, cores=1)
    sim.transfer("up", "gone", 125_000, 10.0, "never")
    token = sim.at(5.0, "never either")
    sim.cancel("up", "gone")
    sim.drop(token)
    assert not sim.busy() and sim.peek() is None


def test_events_at_one_time_come_in_the_order_they_were_scheduled():
    sim = Simulation(up_mbps=math.inf, down_mbps=math.inf, cores=1)
    for name in ("b", "a", "c"):
        sim.at(1.0, name)
    assert [sim.pop()[1] for _ in range(3)] == ["b", "a", "c"]
    with pytest.raises(ValueError, match="before now"):
        sim.at(0.5, "the past")


def test_aggregations_queue_for_the_servers_cores():
    cores = Cores(2)
    assert cores.run(0.0, 1.0) == (0.0, 1.0)
    assert cores.run(0.0, 1.0) == (0.0, 1.0)
    assert cores.run(0.0, 1.0) == (1.0, 2.0)  # both cores busy: it waits
    assert cores.run(5.0, 1.0) == (5.0, 6.0)


def test_model_formulas_by_hand():
    # 1000 examples x 25 MFLOP at 10 GFLOP/s on a device of speed 0.5: 5 s.
    assert compute_seconds(1000, 25e6, 10.0, 0.5) == pytest.approx(5.0)
    assert transfer_seconds(1_000_000, 8.0) == pytest.approx(1.0)
    # 3 plain updates of a 4 MB model: read 12 MB, write 4 MB.
    assert aggregation_bytes([4_000_000] * 3, 4_000_000, compressed=False) == 16_000_000
    # 3 int8 updates (1 MB each): read 3 MB, write and read back 3 x 4 MB, write 4 MB.
    assert aggregation_bytes([1_000_000] * 3, 4_000_000, compressed=True) == 31_000_000
    assert aggregation_seconds(16_000_000, 8.0) == pytest.approx(0.002)


def test_a_simulation_restored_from_its_state_runs_on_as_the_original():
    """``state()`` is plain data (JSON round trip); ``load_state`` continues from it: the
    same events at the same times, transfers part-way through included, dropped ones
    left out."""

    def build() -> Simulation:
        sim = Simulation(up_mbps=8.0, down_mbps=float("inf"), cores=2)
        sim.at(0.5, "a")
        dropped = sim.at(0.7, "dropped")
        sim.at(3.0, "b")
        sim.transfer("up", (1, 0), 1_000_000, 4.0, "sent-1")
        sim.transfer("up", (2, 0), 500_000, 8.0, "sent-2")
        sim.drop(dropped)
        sim.cores.run(0.0, 2.5)
        assert sim.pop() == (0.5, "a")
        return sim

    original = build()
    saved = json.loads(json.dumps(original.state(lambda event, token: {"name": event})))
    assert all(event["name"] != "dropped" for *_, event in saved["queue"])
    restored = Simulation(up_mbps=8.0, down_mbps=float("inf"), cores=2)
    restored.load_state(saved, lambda event: event["name"])
    assert restored.cores.free_at == original.cores.free_at
    rest = [original.pop() for _ in range(3)]
    assert [restored.pop() for _ in range(3)] == rest
    # 8 Mbit/s shared: 4 Mbit at 4 Mbit/s each, then the rest of 8 Mbit at its cap of 4.
    assert rest == [(1.0, "sent-2"), (2.0, "sent-1"), (3.0, "b")]
    assert not original.busy() and not restored.busy()


def test_a_restored_saturated_link_shares_as_the_original():
    """Two flows split a link they fill (each capped at the link's whole rate): restored
    mid-way, the one left speeds up when the other ends, and a flow started and ended
    after the restore changes nothing either."""

    def build() -> Simulation:
        sim = Simulation(up_mbps=10.0, down_mbps=float("inf"), cores=1)
        sim.transfer("up", ("a",), 1_000_000, 10.0, "a done")  # 8 Mbit
        sim.transfer("up", ("b",), 1_500_000, 10.0, "b done")  # 12 Mbit
        sim.at(0.5, "tick")
        assert sim.pop() == (0.5, "tick")
        return sim

    def finish(sim: Simulation) -> list:
        sim.transfer("up", ("c",), 1, 10.0, "c done")
        sim.cancel("up", ("c",))
        return [sim.pop() for _ in range(2)]

    original = build()
    saved = json.loads(json.dumps(original.state(lambda event, token: event)))
    restored = Simulation(up_mbps=10.0, down_mbps=float("inf"), cores=1)
    restored.load_state(saved, lambda event: event)
    rest = finish(original)
    assert finish(restored) == rest
    # 5 Mbit/s each: a ends at 1.6 s; b's last 4 Mbit go at 10 Mbit/s, 0.4 s more.
    assert rest == [(pytest.approx(1.6), "a done"), (pytest.approx(2.0), "b done")]

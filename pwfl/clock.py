"""The simulated clock: how long federated learning would take with every client on its own device.

This machine runs all clients on a few shared cores, so its wall clock cannot
show what PWFL does on real, separate devices. The simulated clock models it,
from the config and the seed alone (``clock.compute = "modelled"``):

* **compute**: a client's training takes the examples it processed (those of
  the batches it ran) times the model's training FLOPs per example, over its
  device's throughput: ``clock.reference_gflops`` x its speed factor
  (:func:`compute_seconds`). The FLOPs are counted once per model by PyTorch's
  ``FlopCounterMode`` (:func:`pwfl.training.flops_per_example`);
* **transfers**: the weights a client receives and the update it sends take
  their bytes over the client's own link, and every transfer running at the
  same moment shares the server's link in that direction: max-min fair shares,
  each capped by its client's bandwidth (:class:`Link`). All K groups'
  downloads of a PWFL round go out over the same server uplink;
* **latency**: one round trip's latency is added when the reply arrives;
* **aggregation**: the server reads every update's payload, decodes it when it
  is compressed, and writes the result (:func:`aggregation_bytes`), at
  ``server.memory_gbps`` on one of ``server.cores`` cores; aggregations that
  find every core busy wait for one (:class:`Cores`).

:class:`Simulation` runs these as discrete events. ``"measured"`` keeps the
earlier model for validation: a client's compute time is the CPU time of its
training thread on this host over its speed factor, and an aggregation takes
the host time it took here; those runs depend on the host.

What the model leaves out: the FLOPs ``FlopCounterMode`` does not count
(normalisation, activations, pooling, dropout, the loss and the optimiser step:
an estimated 2% more than the counted FLOPs on the CNN, 3% on the MLP, printed by
``make bench``), a client's memory traffic,
queueing inside the network, the server's compute beyond memory traffic (robust
aggregators' sorting and distances, the server optimiser) and the sharing of
memory bandwidth between the server's cores. Evaluation (the server's test set,
the clients' own data) is measurement, not part of the protocol, and takes no
simulated time.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pwfl import registry

FlowKey = tuple[Hashable, ...]
"""A transfer's key on a link: a tuple, so a checkpoint can store it as a list."""

COMPUTE = registry.CLOCK_MODES
"""How a client's compute time is priced (``clock.compute``; listed in :mod:`pwfl.registry`)."""


@dataclass(frozen=True)
class ClientTiming:
    """A client's round trip on the simulated clock, in parts."""

    download_s: float
    compute_s: float
    upload_s: float
    latency_s: float

    @property
    def total_s(self) -> float:
        """The whole round trip."""
        return self.download_s + self.compute_s + self.upload_s + self.latency_s


def compute_seconds(examples: int, flops_per_example: float, gflops: float, speed: float) -> float:
    """Modelled training time: ``examples * flops_per_example / (gflops * 1e9 * speed)``."""
    return examples * flops_per_example / (gflops * 1e9 * speed)


def transfer_seconds(num_bytes: int, mbps: float) -> float:
    """Time to move ``num_bytes`` at ``mbps`` megabits per second on an otherwise idle link."""
    return num_bytes * 8 / (mbps * 1e6)


def aggregation_bytes(payloads: Sequence[int], model_bytes: int, compressed: bool) -> int:
    """Memory traffic of aggregating one update per payload into one model.

    The server reads every payload; a compressed one is first decoded (its full
    size written, then read again by the mean); the result is written once.
    """
    decoded = 2 * model_bytes * len(payloads) if compressed else 0
    return int(sum(payloads)) + decoded + model_bytes


def aggregation_seconds(num_bytes: int, memory_gbps: float) -> float:
    """Time one server core takes to stream ``num_bytes`` at ``memory_gbps`` GB/s."""
    return num_bytes / (memory_gbps * 1e9)


@dataclass
class _Flow:
    remaining: float
    """Bits still to move."""
    cap: float
    """The flow's own ceiling in bit/s (its client's bandwidth)."""
    rate: float = 0.0


class Link:
    """A link of ``mbps`` shared by the transfers on it (``inf``: no limit of its own).

    Each transfer is also capped by its other end (a client's bandwidth).
    Shares are max-min fair: transfers whose cap is below an equal share get
    their cap, the rest split what is left equally. Rates change only when a
    transfer starts or ends.

    The transfers' bits, caps and rates are NumPy arrays, so moving them on and
    finding the next to end are a few array operations even for thousands of
    transfers; each element goes through the same IEEE operations as one float
    would, so the times are the same bits. The rates are worked out when next
    needed, not at every start and end: a round's transfers start at one moment,
    and the water-filling runs once for all of them.
    """

    def __init__(self, mbps: float):
        self.capacity = mbps * 1e6
        self.time = 0.0
        self._slots: dict[FlowKey, int] = {}  # in the order the transfers started
        self._keys: list[FlowKey] = []  # each slot's key
        self._remaining = np.zeros(8)  # bits still to move, by slot
        self._caps = np.zeros(8)  # each transfer's own ceiling in bit/s (its client's bandwidth)
        self._rates = np.zeros(8)
        # (cap, key) of every transfer, sorted: the water-filling's order
        self._by_cap: list[tuple[float, FlowKey]] = []
        self._stale = False  # the flows changed since the rates were worked out
        self._at_caps = True  # whether every flow runs at its cap (when not stale)
        self._first: tuple[float, FlowKey] | None = None  # next_done's answer, while
        self._first_known = False  # the flows and the time stay as they are

    @property
    def flows(self) -> dict[FlowKey, _Flow]:
        """Each transfer's bits left, cap and rate, in the order they started (a copy)."""
        self._settle()
        return {
            key: _Flow(float(self._remaining[i]), float(self._caps[i]), float(self._rates[i]))
            for key, i in self._slots.items()
        }

    def advance(self, time: float) -> None:
        """Move every transfer on to ``time``."""
        elapsed = time - self.time
        n = len(self._keys)
        if elapsed > 0:
            self._first_known = False
            if n:
                self._settle()
                # rate * elapsed is inf for an unlimited rate; the bits left clip at 0.
                left = self._remaining[:n] - self._rates[:n] * elapsed
                self._remaining[:n] = np.where(left > 0, left, 0.0)
        self.time = max(self.time, time)

    def add(self, key: FlowKey, bits: float, cap_bps: float) -> None:
        """Start a transfer of ``bits`` now (call :meth:`advance` first)."""
        bisect.insort(self._by_cap, (cap_bps, key))  # first: a key of another kind raises here
        self._forget(key)
        self._first_known = False
        slot = len(self._keys)
        if slot == len(self._remaining):
            self._remaining, self._caps, self._rates = (
                np.resize(values, 2 * slot) for values in (self._remaining, self._caps, self._rates)
            )
        self._slots[key] = slot
        self._keys.append(key)
        self._remaining[slot], self._caps[slot] = bits, cap_bps
        if not self._stale and self._at_caps and self._room():
            self._rates[slot] = cap_bps
        else:
            self._stale = True

    def remove(self, key: FlowKey) -> None:
        """End (or cancel) a transfer."""
        if self._forget(key) and not self._at_caps:
            self._stale = True
        # At their caps the other flows stay there: one flow fewer leaves them more room.

    def restore(self, time: float, flows: dict[FlowKey, _Flow]) -> None:
        """Continue from saved flows, rates included (a checkpoint's)."""
        size = max(8, len(flows))
        self.time = time
        self._slots = {key: i for i, key in enumerate(flows)}
        self._keys = list(flows)
        self._remaining, self._caps, self._rates = (np.zeros(size) for _ in range(3))
        for i, flow in enumerate(flows.values()):
            self._remaining[i], self._caps[i], self._rates[i] = flow.remaining, flow.cap, flow.rate
        self._by_cap = sorted((flow.cap, key) for key, flow in flows.items())
        self._stale, self._first_known = False, False
        self._at_caps = all(flow.rate == flow.cap for flow in flows.values())

    def _forget(self, key: FlowKey) -> bool:
        slot = self._slots.pop(key, None)
        if slot is None:
            return False
        self._first_known = False
        del self._by_cap[bisect.bisect_left(self._by_cap, (float(self._caps[slot]), key))]
        last = len(self._keys) - 1
        if slot != last:  # the last slot's transfer moves into the freed one
            moved = self._keys[last]
            self._keys[slot], self._slots[moved] = moved, slot
            for values in (self._remaining, self._caps, self._rates):
                values[slot] = values[last]
        self._keys.pop()
        return True

    def next_done(self) -> tuple[float, FlowKey] | None:
        """When the first running transfer ends, and which (ties: the smallest key)."""
        if not self._first_known:
            self._first, self._first_known = self._first_done(), True
        return self._first

    def _first_done(self) -> tuple[float, FlowKey] | None:
        n = len(self._keys)
        if not n:
            return None
        self._settle()
        remaining, rates = self._remaining[:n], self._rates[:n]
        now = (remaining <= 0) | np.isinf(rates)
        running = now | (rates > 0)  # a flow at rate 0 never ends
        if not running.any():
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            done = np.where(now, self.time, self.time + remaining / rates)
        first = done[running].min()
        ties = np.flatnonzero(running & (done == first))
        key = self._keys[ties[0]] if len(ties) == 1 else min(self._keys[i] for i in ties)
        return float(first), key

    def _room(self) -> bool:
        """Whether every flow can run at its cap: the flows times the largest cap fit in
        the link with a margin (1e-9 of it) far above the rounding of the water-filling's
        running sum. Then the water-filling gives each flow exactly its cap, since each
        equal share it computes is at least that cap, and the loop over the flows is
        skipped."""
        n = len(self._keys)
        if not n:
            return True
        # below a million flows the margin covers the rounding
        return n < 1_000_000 and n * self._by_cap[-1][0] <= self.capacity * (1 - 1e-9)

    def _settle(self) -> None:
        """Work the rates out if the flows changed since they last were."""
        if self._stale:
            self._share()
            self._stale = False

    def _share(self) -> None:
        n = len(self._keys)
        if self._room():
            self._rates[:n] = self._caps[:n]
            self._at_caps = True
            return
        self._at_caps = False
        # Water-filling: the lowest caps are served first, each with at most an
        # equal share of what the earlier ones left. Each share depends on the
        # ones before it, so this stays a loop of floats.
        left, waiting, rates = self.capacity, n, []
        for cap, _ in self._by_cap:
            rate = min(cap, left / waiting)
            rates.append(rate)
            left -= rate
            waiting -= 1
        self._rates[[self._slots[key] for _, key in self._by_cap]] = rates


class Cores:
    """The server's cores: each aggregation takes the first free one, in the order asked."""

    def __init__(self, count: int):
        self.free_at = [0.0] * count

    def run(self, at: float, duration: float) -> tuple[float, float]:
        """Run a task asked for at ``at``: its start (when a core is free) and end."""
        core = min(range(len(self.free_at)), key=lambda i: (self.free_at[i], i))
        start = max(at, self.free_at[core])
        self.free_at[core] = start + duration
        return start, start + duration


@dataclass(order=True)
class _Scheduled:
    time: float
    seq: int
    event: Any = field(compare=False)


class Simulation:
    """Discrete events on the simulated clock, with the server's two links and its cores.

    Events are processed in time order; at equal times, scheduled events in the
    order they were scheduled, then ending transfers in key order. So the
    order depends only on the events themselves, never on the host.
    """

    def __init__(self, up_mbps: float, down_mbps: float, cores: int):
        self.now = 0.0
        self.links = {"up": Link(up_mbps), "down": Link(down_mbps)}
        """``up``: server to clients (weights); ``down``: clients to server (updates)."""
        self.cores = Cores(cores)
        self._queue: list[_Scheduled] = []
        self._seq = 0
        self._dropped: set[int] = set()
        self._done: dict[tuple[str, FlowKey], Any] = {}

    def at(self, time: float, event: Any) -> int:
        """Schedule ``event`` at ``time`` (not before now); return its token for :meth:`drop`."""
        if time < self.now - 1e-9:
            raise ValueError(f"cannot schedule an event at {time} before now ({self.now})")
        token = self._seq
        heapq.heappush(self._queue, _Scheduled(max(time, self.now), token, event))
        self._seq += 1
        return token

    def drop(self, token: int) -> None:
        """Forget a scheduled event that no longer matters (its job or try is settled)."""
        self._dropped.add(token)

    def transfer(self, link: str, key: FlowKey, num_bytes: int, cap_mbps: float, done: Any) -> None:
        """Start moving ``num_bytes`` on ``link`` now; ``done`` is the event when it ends."""
        self.links[link].advance(self.now)
        self.links[link].add(key, num_bytes * 8.0, cap_mbps * 1e6)
        self._done[link, key] = done

    def cancel(self, link: str, key: FlowKey) -> None:
        """Stop a transfer (its client was given up on)."""
        if self._done.pop((link, key), None) is not None:
            self.links[link].advance(self.now)
            self.links[link].remove(key)

    def peek(self) -> tuple[float, Any] | None:
        """The next event and its time, without taking it."""
        nxt = self._next()
        return None if nxt is None else (nxt[0], nxt[2])

    def pop(self) -> tuple[float, Any]:
        """Take the next event: the clock moves to its time."""
        nxt = self._next()
        if nxt is None:
            raise IndexError("no event left")
        time, source, event = nxt
        for link in self.links.values():
            link.advance(time)
        self.now = max(self.now, time)
        if source is None:
            heapq.heappop(self._queue)
        else:
            link_name, key = source
            self.links[link_name].remove(key)
            del self._done[link_name, key]
        return self.now, event

    def state(self, encode: Callable[[Any, int], Any]) -> dict[str, Any]:
        """The clock whole, as JSON-able data: now, the next token, the cores, every event
        still scheduled (those dropped left out) or waiting for its transfer, and each
        link's transfers and how far each got. ``encode(event, token)`` gives an event's
        data (``token`` -1 for a transfer's)."""
        return {
            "now": self.now,
            "seq": self._seq,
            "cores_free_at": list(self.cores.free_at),
            "queue": [
                [item.time, item.seq, encode(item.event, item.seq)]
                for item in self._queue
                if item.seq not in self._dropped
            ],
            "done": [
                [link, list(key), encode(event, -1)] for (link, key), event in self._done.items()
            ],
            "links": {
                name: {
                    "time": link.time,
                    "flows": [[list(k), f.remaining, f.cap, f.rate] for k, f in link.flows.items()],
                }
                for name, link in self.links.items()
            },
        }

    def load_state(self, state: dict[str, Any], decode: Callable[[Any], Any]) -> None:
        """Continue from :meth:`state`'s data; ``decode`` turns an event's data back into it."""
        self.now, self._seq = float(state["now"]), int(state["seq"])
        self.cores.free_at = [float(t) for t in state["cores_free_at"]]
        self._dropped = set()
        self._queue = [
            _Scheduled(float(t), int(seq), decode(event)) for t, seq, event in state["queue"]
        ]
        heapq.heapify(self._queue)
        self._done = {(link, tuple(key)): decode(event) for link, key, event in state["done"]}
        for name, saved in state["links"].items():
            flows = {
                tuple(key): _Flow(float(remaining), float(cap), float(rate))
                for key, remaining, cap, rate in saved["flows"]
            }
            self.links[name].restore(float(saved["time"]), flows)

    def busy(self) -> bool:
        """Whether anything is scheduled or moving."""
        return bool(self._done) or any(e.seq not in self._dropped for e in self._queue)

    def _skip_dropped(self) -> None:
        while self._queue and self._queue[0].seq in self._dropped:
            self._dropped.discard(heapq.heappop(self._queue).seq)

    def _next(self) -> tuple[float, tuple[str, FlowKey] | None, Any] | None:
        self._skip_dropped()
        best: tuple[float, int, Any, tuple[str, FlowKey] | None, Any] | None = None
        if self._queue:
            top = self._queue[0]
            if all(top.time <= link.time for link in self.links.values()):
                # No transfer ends before its link's time, and at equal times the
                # scheduled events come first: the links need not be asked (nor their
                # rates worked out, so a round's starts, one event each, share one
                # water-filling).
                return top.time, None, top.event
            best = (top.time, 0, top.seq, None, top.event)
        for name in sorted(self.links):
            done = self.links[name].next_done()
            if done is None:
                continue
            candidate = (done[0], 1, (name, done[1]), (name, done[1]), self._done[name, done[1]])
            if best is None or candidate[:3] < best[:3]:
                best = candidate
        return None if best is None else (best[0], best[3], best[4])


def busy_time(
    intervals: Sequence[tuple[float, float]], start: float = -math.inf, end: float = math.inf
) -> float:
    """Length of the union of ``(begin, finish)`` intervals, clipped to ``[start, end]``.

    The server's busy time: two aggregations that overlap count once.
    """
    total, reach = 0.0, -math.inf
    for begin, finish in sorted(intervals):
        begin, finish = max(begin, start, reach), min(finish, end)
        if finish > begin:
            total += finish - begin
        reach = max(reach, finish)
    return total


def idle_time(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Seconds of ``[start, end]`` in which the server aggregated nothing.

    The span less the server's busy time in it (:func:`busy_time`: overlapping
    aggregations count once). This is ``rounds.csv``'s ``idle_s`` of a round; the
    invariants recompute it from ``server.csv`` with this same function.
    """
    return end - start - busy_time(intervals, start, end)


def idle_share(intervals: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Share of ``[start, end]`` in which the server aggregated nothing; NaN for an
    empty span.

    Written as one less the busy share, ``1 - busy / span``, which is how every
    committed summary's ``idle_fraction`` was computed (``idle_time / span`` can
    differ from it in the last bit).
    """
    if not end > start:
        return float("nan")
    return float(1 - busy_time(intervals, start, end) / (end - start))

"""The simulated clock's own host cost: one round of N clients' events, at scale.

A round of ``clients`` clients through :class:`pwfl.clock.Simulation` alone, no
training, driven as the engine drives it: each client's start is an event of its
own, and the next event is peeked at before each is taken. Every client's download
of ``MODEL_BYTES`` starts at time 0 over the server's uplink, its modelled compute
(drawn per client, 0.5 to 2 s) follows, then its upload over the server's
downlink. Clients are of two tiers (50/20 Mbps and 10/5 Mbps down/up,
alternating). The server's links are either ``10000`` Mbps each (the config's
default: at a thousand clients the transfers do not all fit at their caps, so
every start and end shares the link anew) or unlimited. The table gives, per
case, the events handled, the host seconds of the whole round (the best of
``REPEATS``), the host microseconds per event and the simulated round's length,
which depends only on the case.

Usage::

    .venv/bin/python benchmarks/bench.py --only links
"""

from __future__ import annotations

import math
import random
import time

import pandas as pd

from pwfl.clock import Simulation

MODEL_BYTES = 400_000
TIERS = ((50.0, 20.0), (10.0, 5.0))
REPEATS = 3


def one_round(clients: int, server_mbps: float, seed: int = 0) -> tuple[int, float]:
    """Every event of one round of ``clients``: how many, and the simulated end."""
    draw = random.Random(seed)
    compute = [draw.uniform(0.5, 2.0) for _ in range(clients)]
    sim = Simulation(up_mbps=server_mbps, down_mbps=server_mbps, cores=1)
    for client in range(clients):
        sim.at(0.0, ("start", client))
    events = 0
    while sim.busy():
        sim.peek()  # as the engine does before each event
        now, (what, client) = sim.pop()
        events += 1
        if what == "start":
            down, _ = TIERS[client % 2]
            sim.transfer("up", (client,), MODEL_BYTES, down, ("downloaded", client))
        elif what == "downloaded":
            sim.at(now + compute[client], ("computed", client))
        elif what == "computed":
            _, up = TIERS[client % 2]
            sim.transfer("down", (client,), MODEL_BYTES, up, ("uploaded", client))
    return events, sim.now


def run(smoke: bool = False) -> pd.DataFrame:
    """Host seconds of one round of each size, on a saturated and a free server link."""
    rows = []
    for clients in (10, 100) if smoke else (100, 1_000, 3_000):
        for server_mbps in (10_000.0, math.inf):
            best, events, end = math.inf, 0, 0.0
            for _ in range(1 if smoke else REPEATS):
                start = time.perf_counter()
                events, end = one_round(clients, server_mbps)
                best = min(best, time.perf_counter() - start)
            rows.append(
                {
                    "clients": clients,
                    "server_mbps": server_mbps,
                    "events": events,
                    "host_s": best,
                    "us_per_event": best / events * 1e6,
                    "sim_round_s": end,
                }
            )
    return pd.DataFrame(rows)

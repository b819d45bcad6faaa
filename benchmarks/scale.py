"""Scale: thousands of simulated clients, a few sampled per round (small MLP, fedavg).

Every client gets 40 images of mnist-5k of its own (``resample``: clients share
images, which does not matter for time and memory). Peak memory is the resident
memory of this process and every descendant (Ray's daemons and workers) summed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from common import PeakMemory, timed_run

from pwfl.config import load_config


def run(smoke: bool = False) -> pd.DataFrame:
    """One run per (clients, fraction sampled)."""
    # 10,000 clients did not get past discovery in 5 minutes here: Flower 1.41's
    # in-memory link state scans every pending message for every node on each sweep
    # of its simulation loop (InMemoryLinkState.get_message_ins, seen with py-spy),
    # so a sweep costs nodes x pending messages. The cases below show the growth.
    cases = [(200, 0.05)] if smoke else [(1_000, 0.01), (1_000, 0.1), (2_000, 0.01)]
    rows = []
    for clients, fraction in cases:
        cfg = load_config(
            None,
            [
                f"data.num_clients={clients}",
                "data.partitioner=resample",
                "data.examples_per_client=40",
                "model.name=mlp",
                "strategy.name=fedavg",
                "strategy.num_rounds=3",
                f"strategy.fraction_train={fraction}",
                "strategy.fraction_evaluate=0.0",
                "checkpoint.every=0",
            ],
        )
        with tempfile.TemporaryDirectory() as tmp, PeakMemory() as memory:
            timing = timed_run(cfg, Path(tmp) / "run")
        rows.append(
            {
                "clients": clients,
                "sampled_per_round": round(clients * fraction),
                "startup_s": timing["startup_s"],
                "first_round_s": timing["first_round_s"],
                "steady_round_s": timing["steady_round_s"],
                "peak_rss_gib": memory.peak_bytes / 2**30,
            }
        )
    return pd.DataFrame(rows)

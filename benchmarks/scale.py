"""Scale: populations of 1,000 to 1,000,000 clients, 100 sampled per round.

The clients are bound to a pool of Flower nodes (``simulation.client_binding =
"pool"``, the default); the population is a number, so start-up, rounds and
memory should follow the cohort, not the population. Every client draws 40
images of mnist-5k of its own (``resample``: nothing per client is materialised)
and trains the small MLP, so each round does the same work at every size. At
the sizes where it still runs, the same run with one Flower node per client
(``"node"``) is measured beside it. Peak memory is the resident memory of this
process and every descendant (Ray's daemons and workers) summed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from common import PeakMemory, timed_run

from pwfl.config import load_config

SAMPLED = 100
POPULATIONS = (1_000, 10_000, 100_000, 1_000_000)
NODE_BOUND_UP_TO = 1_000
"""One node per client: 10,000 nodes did not finish discovery in 5 minutes here
(Flower 1.41's simulation loop scans every stored message for every node)."""


def _config(clients: int, sampled: int, strategy: str, binding: str, rounds: int, backend: str):
    return load_config(
        None,
        [
            f"data.num_clients={clients}",
            "data.partitioner=resample",
            "data.examples_per_client=40",
            "model.name=mlp",
            f"strategy.name={strategy}",
            "strategy.k=2",
            f"strategy.num_rounds={rounds}",
            f"strategy.fraction_train={sampled / clients}",
            "strategy.fraction_evaluate=0.0",
            "checkpoint.every=0",
            f"simulation.client_binding={binding}",
            f"simulation.backend={backend}",
        ],
    )


def run(smoke: bool = False) -> pd.DataFrame:
    """One run per (population, strategy, binding); ratios to the smallest population."""
    populations, sampled = ((200, 2_000), 10) if smoke else (POPULATIONS, SAMPLED)
    node_up_to = 200 if smoke else NODE_BOUND_UP_TO
    # Each run starts Ray's client actors afresh (~10 s here); the smoke check of the
    # script needs one strategy only, and its clients in threads of this process (the
    # same apps and bindings without Ray; tests/test_e2e.py runs the Ray backend).
    strategies = ("pwfl",) if smoke else ("pwfl", "fedavg")
    backend = "inline" if smoke else "ray"
    rows = []
    for strategy in strategies:
        for binding in ("pool", "node"):
            for clients in populations:
                if binding == "node" and clients > node_up_to:
                    continue
                cfg = _config(clients, sampled, strategy, binding, 2 if smoke else 3, backend)
                with tempfile.TemporaryDirectory() as tmp, PeakMemory() as memory:
                    timing = timed_run(cfg, Path(tmp) / "run")
                rows.append(
                    {
                        "strategy": strategy,
                        "binding": binding,
                        "clients": clients,
                        "sampled_per_round": sampled,
                        "startup_s": timing["startup_s"],
                        "mean_round_s": timing["mean_round_s"],
                        "peak_rss_gib": memory.peak_bytes / 2**30,
                    }
                )
    frame = pd.DataFrame(rows)
    # Each figure over the same strategy's pool run at the smallest population.
    base = frame[(frame["binding"] == "pool") & (frame["clients"] == populations[0])]
    base = base.set_index("strategy")
    for name in ("startup_s", "mean_round_s", "peak_rss_gib"):
        frame[f"{name.rsplit('_', 1)[0]}_ratio"] = frame[name] / frame["strategy"].map(base[name])
    return frame

"""Hand-built run tables the analysis tests share: rounds, clients and server rows."""

from __future__ import annotations

import pandas as pd

from pwfl import analysis


def rounds_table() -> pd.DataFrame:
    """Two seeds of FedAvg (one weight set) and PWFL (two), three rounds each.

    Every round lasts 2 simulated seconds (1 for PWFL), of which the server is
    idle 1.5 s (0.5 s for PWFL); each weight set moves 100 bytes up and 200 down.
    """
    acc = {
        ("fedavg", 0, "0"): [0.50, 0.80, 0.90],
        ("fedavg", 1, "0"): [0.60, 0.85, 0.94],
        ("pwfl", 0, "0"): [0.40, 0.70, 0.88],
        ("pwfl", 0, "1"): [0.45, 0.91, 0.92],
        ("pwfl", 1, "0"): [0.40, 0.70, 0.80],
        ("pwfl", 1, "1"): [0.45, 0.75, 0.84],
    }
    rows = []
    for (strategy, seed, ws), values in acc.items():
        round_s = 2.0 if strategy == "fedavg" else 1.0
        idle_s = 1.5 if strategy == "fedavg" else 0.5
        for r, a in enumerate(values, start=1):
            rows.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "round": r,
                    "weight_set": ws,
                    "accuracy": a,
                    "round_wall_s": 10.0,
                    "elapsed_wall_s": 10.0 * r,
                    "round_sim_s": round_s,
                    "sim_time_s": round_s * r,
                    "idle_s": idle_s,
                    "bytes_up": 100,
                    "bytes_down": 200,
                }
            )
    return analysis.typed(pd.DataFrame(rows), analysis.ROUND_TYPES)


def clients_table() -> pd.DataFrame:
    """One PWFL run: four clients, two rounds; client 3 is slow and flagged in round 2."""
    rows = []
    groups = {1: {0: "0", 1: "1", 2: "0", 3: "1"}, 2: {0: "1", 1: "0", 2: "1", 3: "0"}}
    for r, split in groups.items():
        for client, ws in split.items():
            rtt = 4.0 if client == 3 else 1.0 + 0.1 * client
            rows.append(
                {
                    "strategy": "pwfl",
                    "seed": 0,
                    "round": r,
                    "phase": "train",
                    "client": client,
                    "weight_set": ws,
                    "status": "ok",
                    "straggler": client == 3 and r == 2,
                    "local_epochs": 0.5 if client == 3 and r == 2 else 1.0,
                    "compute_s": rtt - 0.5,
                    "rtt_s": rtt,
                    "sim_start_s": 10.0 * (r - 1),
                    "sim_end_s": 10.0 * (r - 1) + rtt,
                }
            )
        rows.append(
            {"strategy": "pwfl", "seed": 0, "round": r, "phase": "evaluate", "client": 0}
            | {"weight_set": "0", "status": "ok", "straggler": None}
        )
    return analysis.typed(pd.DataFrame(rows), analysis.CLIENT_TYPES)


def server_table() -> pd.DataFrame:
    rows = [
        {"strategy": "pwfl", "seed": 0, "round": r, "weight_set": ws}
        | {"busy_start_s": 10.0 * (r - 1) + 4.0, "busy_end_s": 10.0 * (r - 1) + 4.5}
        for r in (1, 2)
        for ws in ("0", "1")
    ]
    return analysis.typed(pd.DataFrame(rows), analysis.SERVER_TYPES)
